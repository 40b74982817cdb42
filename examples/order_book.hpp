// examples/order_book.hpp — OrderBook: a limit order book (price levels) in
// one named block, built only from shmkit's public headers, as a user builds
// a structure of their own on shmkit. Copy it and change the parts you need.
//
// Contract
//   * One block, kind kKind (BlockKind::user + 1), element type BookState
//     (TypeName "shmkit.OrderBook/v1"), count 1. Prefix: BookControl (the
//     RobustMutex, repair counters, the journal). Payload: BookState (the
//     levels), then a SeqLock<TopOfBook> region and a BroadcastRing<Trade>
//     region, each a typed region with its own header (typed_block.hpp), the
//     ring's 128-byte aligned in the mapping (its control words are).
//     `shmkit show NAME` prints the kind, the type name, count, state and the
//     payload in hex.
//   * Writers: any number of processes may call apply(); the RobustMutex
//     makes one of them the matching engine at a time. apply() applies order
//     `id` only if it is the next one (state.applied == id), so a writer that
//     restarts replays its stream from applied() and nothing is applied
//     twice. Blocking (the mutex); never throws.
//   * Readers: top()/try_top()/top_reader() read the top of book (best bid
//     and ask, their sizes, the number of orders applied) through the SeqLock
//     without taking the lock: obstruction-free, never torn (SeqLock), never
//     crossed (matching rests no order through the other side's best
//     price). trades_from(cursor) reads the trade stream (BroadcastRing:
//     wait-free, a lapped reader learns how many trades it lost). Readers
//     never write the block.
//   * Crash semantics. An order changes many words (levels, best prices,
//     counters, the top of book, the trade stream), so apply() journals it
//     first: the journal (in the prefix) receives the new value of every
//     level it changes, the new head and its trades (state "filling"), is
//     committed with one store (state "committed"), and only then are the
//     book, the trade ring and the top of book written from the journal
//     (absolute values: doing it twice is doing it once). A writer SIGKILLed
//     at any instruction leaves the mutex to the next locker as owner_died;
//     that locker repairs before anything else:
//       filling or idle  roll back: the book was not touched; the journal is
//                        dropped and the order is applied again by whoever
//                        comes next with it;
//       committed        roll forward: rewrite the book and the head from
//                        the journal, push the trades the ring does not have
//                        yet (the ring's write index minus the index recorded
//                        at commit says how many it has: none is published
//                        twice or lost), store the top of book (which also
//                        repairs a SeqLock left odd by a kill mid-store);
//     then make_consistent(). A repair killed in turn leaves the journal as
//     it was (committed), so the next locker repairs again. Lockers try_lock
//     first, which judges a holder's liveness at once, so a writer started
//     after a kill repairs immediately (a blocked lock() notices a dead
//     holder only after a sleep slice, robust_mutex.hpp). Readers meanwhile
//     see the last complete top of
//     book (or "write in progress" while a dead writer's SeqLock store is
//     unrepaired) and no new trades. stats() counts repairs.
//   * Untrusted block: attach checks the header, the sizes and both nested
//     regions; every index read from the block (best prices, journal
//     entries, counts) is bounds-checked before use. A journal that does not
//     validate during a repair cannot be repaired: apply() returns corrupt
//     and the mutex is left not recoverable (recreate the book), never an
//     access outside the block.
//   * Python (or any reader without shmkit): the top of book is the SeqLock
//     region at byte kTopRegionOffset of the block. Its sequence word is a
//     little-endian uint64 at kTopSeqOffset (odd: a write in progress), the
//     snapshot is struct.unpack_from(kTopStructFormat, buf, kTopOffset)
//     (fields in TopOfBook order). Read seq, unpack, read seq again: keep the
//     snapshot only if both reads are equal and even. These offsets are
//     static_asserted below: kTopSeqOffset 18880, kTopOffset 19008.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include <shmkit/lockfree/broadcast_ring.hpp>
#include <shmkit/lockfree/seqlock.hpp>
#include <shmkit/sync/robust_mutex.hpp>
#include <shmkit/typed_block.hpp>

namespace order_book {

using shmkit::BlockKind;

inline constexpr std::int64_t kLevels = 256;     // price ticks 0 .. kLevels-1
inline constexpr std::int64_t kNoBid = -1;       // best_bid when no bid rests
inline constexpr std::int64_t kNoAsk = kLevels;  // best_ask when no ask rests
// An order touches at most every level of one side plus the level it rests
// at, and trades at most once per level.
inline constexpr std::uint64_t kMaxWrites = kLevels + 1;
inline constexpr std::uint64_t kMaxTrades = kLevels;

enum Side : std::uint32_t { kBuy = 0, kSell = 1 };
enum OrderType : std::uint32_t { kLimit = 0, kCancel = 1 };

// An order: a limit order (match what crosses, rest the remainder) or a
// cancel (take up to qty off the level side/price). Price outside the grid
// or qty 0: applied as a no-op (the id is consumed).
struct Order {
  std::uint64_t id;  // position in the stream: order i is applied i-th
  std::uint32_t side;
  std::uint32_t type;
  std::int64_t price;
  std::uint64_t qty;
};

// One fill: the taker's order id, the resting level's price, the quantity.
struct Trade {
  std::uint64_t id;  // 0, 1, 2, ... over the book's life
  std::uint64_t order_id;
  std::int64_t price;
  std::uint64_t qty;
  std::uint64_t taker_side;
  friend bool operator==(const Trade&, const Trade&) = default;
};

// The top of book readers see. Prices are -1 when that side is empty.
// struct format "<QqQqQQQ" (56 bytes, no padding).
struct TopOfBook {
  std::uint64_t seq;  // orders applied when it was taken
  std::int64_t bid_price;
  std::uint64_t bid_size;
  std::int64_t ask_price;
  std::uint64_t ask_size;
  std::uint64_t trades;  // trades so far
  std::uint64_t check;   // top_check() of the fields above
  friend bool operator==(const TopOfBook&, const TopOfBook&) = default;
};
inline constexpr std::string_view kTopStructFormat = "<QqQqQQQ";
static_assert(sizeof(TopOfBook) == 56 && std::is_trivially_copyable_v<TopOfBook>);

constexpr std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
constexpr std::uint64_t top_check(const TopOfBook& t) noexcept {
  std::uint64_t h = mix(t.trades);
  h = mix(h ^ t.ask_size);
  h = mix(h ^ static_cast<std::uint64_t>(t.ask_price));
  h = mix(h ^ t.bid_size);
  h = mix(h ^ static_cast<std::uint64_t>(t.bid_price));
  return mix(h ^ t.seq);
}

// The book proper: the element type of the block (payload offset 0).
struct BookState {
  std::uint64_t applied;          // orders applied: the id the next order must have
  std::uint64_t trades;           // trades made so far
  std::int64_t best_bid;          // highest level with bid_qty > 0, or kNoBid
  std::int64_t best_ask;          // lowest level with ask_qty > 0, or kNoAsk
  std::uint64_t qty[2][kLevels];  // resting quantity per side (kBuy, kSell) and level
};

}  // namespace order_book

// The type name is part of the fingerprint attach checks: bump "/v1" when
// the layout changes, so an old process refuses a new block.
template <>
struct shmkit::TypeName<order_book::BookState> {
  static constexpr std::string_view value = "shmkit.OrderBook/v1";
};
template <>
struct shmkit::TypeName<order_book::TopOfBook> {
  static constexpr std::string_view value = "shmkit.OrderBook.Top/v1";
};
template <>
struct shmkit::TypeName<order_book::Trade> {
  static constexpr std::string_view value = "shmkit.OrderBook.Trade/v1";
};

namespace order_book {

// Journal states.
inline constexpr std::uint64_t kIdle = 0;
inline constexpr std::uint64_t kFilling = 1;
inline constexpr std::uint64_t kCommitted = 2;

struct JournalWrite {
  std::uint64_t index;  // side * kLevels + level
  std::uint64_t value;  // the level's new quantity
};

// One order's effect, written before the book is touched.
struct Journal {
  std::uint64_t state;  // kIdle / kFilling / kCommitted (std::atomic_ref)
  std::uint64_t order_id;
  std::uint64_t n_writes;
  std::uint64_t n_trades;
  std::uint64_t ring_base;  // the trade ring's write index at commit
  std::uint64_t new_trades;
  std::int64_t new_best_bid;
  std::int64_t new_best_ask;
  JournalWrite writes[kMaxWrites];
  Trade trades[kMaxTrades];
};

struct BookControl {
  shmkit::RobustMutex mutex;  // guards BookState and the journal
  std::uint64_t rolled_back;  // repairs, under the mutex (std::atomic_ref)
  std::uint64_t rolled_forward;
  Journal journal;

  BookControl() = default;
  // Lives at a fixed place in a block other processes map.
  BookControl(const BookControl&) = delete;
  BookControl& operator=(const BookControl&) = delete;
};
static_assert(std::is_standard_layout_v<BookControl> && std::is_standard_layout_v<BookState>);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);

// ------------------------------------------------------------ the layout

inline constexpr std::uint64_t round64(std::uint64_t x) noexcept { return (x + 63) / 64 * 64; }
inline constexpr std::uint64_t kPayloadOffset = round64(shmkit::BlockHeader::kSize + sizeof(BookControl));
inline constexpr std::uint64_t kTopRegion = round64(sizeof(BookState));  // in the payload
// A SeqLock region: header, SeqLockControl (two cache lines), the words.
inline constexpr std::uint64_t kTopRegionSize =
    round64(shmkit::BlockHeader::kSize + sizeof(shmkit::SeqLockControl)) + round64(sizeof(TopOfBook));
// The ring's control words want 128-byte alignment in the mapping.
inline constexpr std::uint64_t kRingAlign = alignof(shmkit::BroadcastControl);
inline constexpr std::uint64_t kRingRegion =  // in the payload
    (kPayloadOffset + kTopRegion + kTopRegionSize + kRingAlign - 1) / kRingAlign * kRingAlign -
    kPayloadOffset;
static_assert((kPayloadOffset + kRingRegion) % kRingAlign == 0);
// Absolute offsets in the block, for readers without shmkit (Python).
inline constexpr std::uint64_t kTopRegionOffset = kPayloadOffset + kTopRegion;
inline constexpr std::uint64_t kTopSeqOffset = kTopRegionOffset + shmkit::BlockHeader::kSize;
inline constexpr std::uint64_t kTopOffset =
    kTopRegionOffset + round64(shmkit::BlockHeader::kSize + sizeof(shmkit::SeqLockControl));
static_assert(sizeof(BookControl) == 14448 && kPayloadOffset == 14592 && kTopRegionOffset == 18752 &&
                  kTopSeqOffset == 18880 && kTopOffset == 19008,
              "the documented offsets (the Python reader) changed: bump the TypeName version");

enum class Step : std::uint8_t {
  locked,        // the lock is held; the journal is idle
  filling,       // the journal's first level write recorded (state filling)
  committed,     // the journal committed; the book untouched
  book_half,     // half the level writes applied to the book
  book_done,     // levels and head written; trades not pushed
  trade_pushed,  // the first of several trades pushed
  top_stored,    // the top of book stored; the journal still committed
  idle,          // the journal idle again; the lock still held
};
inline constexpr int kSteps = 8;
// Called at each Step of apply() (tests: a hook that SIGKILLs the process).
using StepHook = void (*)(Step, const Order&);

enum class Status : std::uint8_t {
  applied,          // the order was the next one and is applied
  skipped,          // not the next one (next says which is)
  not_recoverable,  // the mutex is not recoverable: recreate the book
  corrupt,          // a repair found a journal that does not validate (now not recoverable)
};
enum class Repair : std::uint8_t { none, rolled_back, rolled_forward };

struct ApplyResult {
  Status status = Status::applied;
  Repair repair = Repair::none;  // what this call did first for a dead writer
  std::uint64_t next = 0;        // state.applied afterwards
};

struct Stats {
  std::uint64_t rolled_back, rolled_forward;
};

// Matching, as a pure function of the book: fills `j` (the writes, trades
// and new head of order `o` against `s`) without writing `s`. The serial
// replay of the test runs the same function on a private BookState.
inline void compute(const BookState& s, const Order& o, Journal& j, StepHook hook = nullptr) noexcept {
  j.order_id = o.id;
  j.n_writes = 0;
  j.n_trades = 0;
  j.new_trades = s.trades;
  // Untrusted: best prices from the block are used only when in range.
  j.new_best_bid = s.best_bid >= kNoBid && s.best_bid < kLevels ? s.best_bid : kNoBid;
  j.new_best_ask = s.best_ask >= 0 && s.best_ask <= kNoAsk ? s.best_ask : kNoAsk;
  auto best_from = [&s](std::uint32_t side, std::int64_t from, std::int64_t skip) {
    if (side == kBuy) {
      for (std::int64_t p = std::min(from, kLevels - 1); p >= 0; --p)
        if (p != skip && s.qty[kBuy][p] != 0) return p;
      return kNoBid;
    }
    for (std::int64_t p = std::max<std::int64_t>(from, 0); p < kLevels; ++p)
      if (p != skip && s.qty[kSell][p] != 0) return p;
    return kNoAsk;
  };
  auto write = [&](std::uint32_t side, std::int64_t p, std::uint64_t v) {
    j.writes[j.n_writes++] = {side * static_cast<std::uint64_t>(kLevels) + static_cast<std::uint64_t>(p), v};
    if (hook && j.n_writes == 1) hook(Step::filling, o);
  };
  const bool valid = o.side <= kSell && o.price >= 0 && o.price < kLevels && o.qty != 0;
  if (valid && o.type == kCancel) {
    const std::uint64_t cur = s.qty[o.side][o.price];
    const std::uint64_t left = cur - std::min(cur, o.qty);
    write(o.side, o.price, left);
    if (left == 0 && o.side == kBuy && o.price == j.new_best_bid) {
      j.new_best_bid = best_from(kBuy, o.price, o.price);
    } else if (left == 0 && o.side == kSell && o.price == j.new_best_ask) {
      j.new_best_ask = best_from(kSell, o.price, o.price);
    }
  } else if (valid && o.type == kLimit) {
    const std::uint32_t other = o.side == kBuy ? kSell : kBuy;
    std::int64_t& best_other = o.side == kBuy ? j.new_best_ask : j.new_best_bid;
    auto crosses = [&](std::int64_t p) {
      return o.side == kBuy ? p <= o.price && p < kLevels : p >= o.price && p >= 0;
    };
    std::uint64_t left = o.qty;
    std::int64_t p = best_other;
    while (left != 0 && crosses(p)) {
      const std::uint64_t avail = s.qty[other][p];
      const std::uint64_t take = std::min(left, avail);
      if (take != 0) {
        j.trades[j.n_trades++] = {j.new_trades++, o.id, p, take, o.side};
        write(other, p, avail - take);
        left -= take;
      }
      if (avail - take != 0) break;  // the level still has quantity: done
      p = o.side == kBuy ? best_from(kSell, p + 1, -1) : best_from(kBuy, p - 1, -1);
    }
    best_other = p;
    if (left != 0) {
      write(o.side, o.price, s.qty[o.side][o.price] + left);
      if (o.side == kBuy)
        j.new_best_bid = std::max(j.new_best_bid, o.price);
      else
        j.new_best_ask = std::min(j.new_best_ask, o.price);
    }
  }
}

// Writes journal `j` into `s` (absolute values: idempotent). The journal is
// in the block, so counts and indices are clamped here whatever validated
// them before (a peer that ignores the mutex can rewrite it at any time).
inline void apply_journal(BookState& s, const Journal& j, const Order* o = nullptr,
                          StepHook hook = nullptr) noexcept {
  const std::uint64_t n = std::min(j.n_writes, kMaxWrites);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t index = j.writes[i].index;
    if (index < 2 * static_cast<std::uint64_t>(kLevels))
      s.qty[index / kLevels][index % kLevels] = j.writes[i].value;
    if (hook && i == n / 2) hook(Step::book_half, *o);
  }
  s.best_bid = j.new_best_bid;
  s.best_ask = j.new_best_ask;
  s.trades = j.new_trades;
  s.applied = j.order_id + 1;
}

inline TopOfBook top_of(const BookState& s) noexcept {
  TopOfBook t{};
  t.seq = s.applied;
  t.trades = s.trades;
  const bool bid = s.best_bid >= 0 && s.best_bid < kLevels;
  const bool ask = s.best_ask >= 0 && s.best_ask < kLevels;
  t.bid_price = bid ? s.best_bid : -1;
  t.bid_size = bid ? s.qty[kBuy][s.best_bid] : 0;
  t.ask_price = ask ? s.best_ask : -1;
  t.ask_size = ask ? s.qty[kSell][s.best_ask] : 0;
  t.check = top_check(t);
  return t;
}

// ------------------------------------------------------------ the handle

class OrderBook {
 public:
  static constexpr BlockKind kKind = static_cast<BlockKind>(static_cast<std::uint32_t>(BlockKind::user) + 1);

  // Creates the book `name` with a trade ring of `trade_capacity` (a power of
  // two) trades. Throws as create_typed_block (EEXIST, ...) and
  // std::invalid_argument for a bad capacity.
  static OrderBook create(std::string_view name, std::uint64_t trade_capacity = 1u << 16) {
    const shmkit::BlockSpec ring = shmkit::BroadcastRing<Trade>::region_spec(trade_capacity, name);
    shmkit::BlockSpec spec;
    spec.kind = kKind;
    spec.type = shmkit::TypeFingerprint::of<BookState>();
    spec.type_name = shmkit::TypeName<BookState>::value;
    spec.count = 1;
    spec.prefix_size = sizeof(BookControl);
    spec.payload_size = kRingRegion + shmkit::typed_region_size(ring);
    spec.param[0] = trade_capacity;
    shmkit::TypedBlock b = shmkit::create_typed_block(
        name, spec, [&](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) BookControl();
          auto* s = new (payload.data()) BookState();
          s->best_bid = kNoBid;
          s->best_ask = kNoAsk;
          const TopOfBook top = top_of(*s);
          shmkit::init_typed_region(payload.subspan(kTopRegion, kTopRegionSize),
                                    shmkit::SeqLock<TopOfBook>::region_spec(),
                                    [&top](std::span<std::byte> p, std::span<std::byte> w) {
                                      shmkit::SeqLock<TopOfBook>::init_region(p, w, top);
                                    });
          shmkit::init_typed_region(payload.subspan(kRingRegion), ring,
                                    shmkit::BroadcastRing<Trade>::init_region);
        });
    return OrderBook(std::move(b));
  }

  // Attaches and validates everything (std::invalid_argument naming the
  // block and the field; std::system_error ENOENT if it does not exist).
  static OrderBook attach(std::string_view name, const shmkit::AttachOptions& options = {}) {
    return OrderBook(
        shmkit::attach_typed_block(name, kKind, shmkit::TypeFingerprint::of<BookState>(), options));
  }

  OrderBook(OrderBook&&) noexcept = default;
  OrderBook& operator=(OrderBook&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t trade_capacity() const noexcept { return trades_.capacity(); }

  // ---- the matching engine (any process; one at a time under the mutex)

  // Applies `o` if it is the next order (o.id == applied()), repairing first
  // if the previous holder died. `hook` is for tests (Step).
  ApplyResult apply(const Order& o, StepHook hook = nullptr) noexcept {
    ApplyResult res;
    if (!lock(res, hook)) return res;
    if (hook) hook(Step::locked, o);
    if (o.id != state_->applied) {
      res.status = Status::skipped;
      res.next = state_->applied;
      (void)ctl_->mutex.unlock();
      return res;
    }
    Journal& j = ctl_->journal;
    set_state(j, kFilling);
    compute(*state_, o, j, hook);
    // (J1) release: the journal's entries are in memory before the commit
    // word that makes them authoritative (pairs with the next locker's
    // acquire in RobustMutex::lock, which sees this store even if we die
    // right after it).
    j.ring_base = trades_.write_index();
    set_state(j, kCommitted);
    // (J2) release fence: the commit word is in memory before the first
    // write to the book below, so a kill between them is "committed, book
    // untouched" and never "book half written, journal not committed".
    std::atomic_thread_fence(std::memory_order_release);
    if (hook) hook(Step::committed, o);
    roll_forward(&o, hook);
    // (J3) release: the book, trades and top are written before "idle".
    set_state(j, kIdle);
    if (hook) hook(Step::idle, o);
    res.next = state_->applied;
    (void)ctl_->mutex.unlock();
    return res;
  }

  // Orders applied so far (the id the next order needs), read under the
  // mutex (repairing first if a writer died); where a restarted writer
  // resumes its stream. ~0 if the mutex is not recoverable. `hook` as
  // apply()'s (a repair passes book_half..top_stored with the journal's order).
  std::uint64_t applied(StepHook hook = nullptr) noexcept {
    ApplyResult res;
    if (!lock(res, hook)) return ~std::uint64_t{0};
    const std::uint64_t n = state_->applied;
    (void)ctl_->mutex.unlock();
    return n;
  }

  // A copy of the whole book taken under the mutex (repairing first if a
  // writer died); false if the mutex is not recoverable.
  bool snapshot(BookState& out) noexcept {
    ApplyResult res;
    if (!lock(res)) return false;
    std::memcpy(&out, state_, sizeof out);
    (void)ctl_->mutex.unlock();
    return true;
  }

  Stats stats() const noexcept {
    return {std::atomic_ref<std::uint64_t>(ctl_->rolled_back).load(std::memory_order_relaxed),
            std::atomic_ref<std::uint64_t>(ctl_->rolled_forward).load(std::memory_order_relaxed)};
  }

  // ---- readers (never lock, never write)

  [[nodiscard]] bool try_top(TopOfBook& out) const noexcept { return top_.try_read(out); }
  TopOfBook top() const noexcept { return top_.read(); }
  // A polling reader (a local copy while the sequence has not moved).
  shmkit::SeqLockReader<TopOfBook> top_reader() const noexcept { return top_.reader(); }
  // Trades from `cursor` (0: the first trade the book made, if not yet
  // overwritten).
  shmkit::BroadcastReader<Trade> trades_from(std::uint64_t cursor) const noexcept {
    return trades_.reader_at(cursor);
  }

  // The same top of book computed under the mutex (what a reader would do
  // without the SeqLock; the benchmark's baseline). False if not recoverable.
  bool top_locked(TopOfBook& out) noexcept {
    ApplyResult res;
    if (!lock(res)) return false;
    out = top_of(*state_);
    (void)ctl_->mutex.unlock();
    return true;
  }

 private:
  explicit OrderBook(shmkit::TypedBlock b)
      : block_(std::move(b)),
        ctl_(nullptr),
        state_(nullptr),
        top_(open_top(block_)),
        trades_(open_trades(block_)) {
    ctl_ = reinterpret_cast<BookControl*>(block_.prefix.data());
    state_ = reinterpret_cast<BookState*>(block_.payload.data());
  }

  // Checks the outer header's own fields (count, prefix, payload size) and
  // returns the bytes of the nested region at `offset` of the payload.
  static std::span<std::byte> nested(const shmkit::TypedBlock& b, std::uint64_t offset, std::uint64_t size) {
    const shmkit::BlockHeader& h = b.header;
    const std::uint64_t capacity = h.param[0];
    const bool ok =
        h.count == 1 && h.prefix_size >= sizeof(BookControl) && capacity != 0 &&
        (capacity & (capacity - 1)) == 0 && capacity <= (std::uint64_t{1} << 30) &&
        h.payload_size ==
            kRingRegion + shmkit::typed_region_size(shmkit::BroadcastRing<Trade>::region_spec(capacity, "-"));
    if (!ok || offset > h.payload_size || size > h.payload_size - offset) {
      throw std::invalid_argument("order_book: block \"" + b.shm.name() +
                                  "\": count, prefix_size, param[0] (trade capacity) or payload_size "
                                  "is not an order book's");
    }
    return b.payload.subspan(offset, size);
  }
  // Each nested object gets a TypedBlock of its own: a second mapping of the
  // same block (SharedMemory is move-only), whose region is the nested one.
  template <class Object>
  static shmkit::TypedBlock open_nested(const shmkit::TypedBlock& outer, std::uint64_t offset,
                                        std::uint64_t size, std::string_view what) {
    const std::span<std::byte> in_outer = nested(outer, offset, size);
    shmkit::TypedBlock b;
    b.shm = shmkit::SharedMemory::attach(outer.shm.name());
    if (b.shm.size() != outer.shm.size()) {
      throw std::invalid_argument("order_book: block \"" + outer.shm.name() + "\" changed size");
    }
    const auto at = static_cast<std::size_t>(in_outer.data() - outer.shm.buf().data());
    static_cast<shmkit::TypedRegion&>(b) =
        shmkit::open_typed_region(b.shm.buf().subspan(at, in_outer.size()), Object::kKind,
                                  shmkit::TypeFingerprint::of<typename Object::value_type>(), what);
    return b;
  }
  static shmkit::SeqLock<TopOfBook> open_top(const shmkit::TypedBlock& b) {
    return shmkit::SeqLock<TopOfBook>::from_block(
        open_nested<shmkit::SeqLock<TopOfBook>>(b, kTopRegion, kTopRegionSize, "order book top of book"));
  }
  static shmkit::BroadcastRing<Trade> open_trades(const shmkit::TypedBlock& b) {
    return shmkit::BroadcastRing<Trade>::from_block(open_nested<shmkit::BroadcastRing<Trade>>(
        b, kRingRegion, b.header.payload_size - std::min(b.header.payload_size, kRingRegion),
        "order book trades"));
  }

  static void set_state(Journal& j, std::uint64_t v) noexcept {
    std::atomic_ref<std::uint64_t>(j.state).store(v, std::memory_order_release);
  }
  static void count(std::uint64_t& c) noexcept {
    std::atomic_ref<std::uint64_t>(c).store(c + 1, std::memory_order_relaxed);
  }

  // Takes the mutex; repairs after a dead holder. False (res says why) if
  // not held.
  bool lock(ApplyResult& res, StepHook hook = nullptr) noexcept {
    // try_lock first: it checks a holder's liveness at once, where a
    // blocked lock() would notice a dead holder only after a sleep slice
    // (robust_mutex.hpp), so a writer that replaces a killed one repairs
    // as soon as it starts.
    shmkit::LockResult r = ctl_->mutex.try_lock();
    if (r == shmkit::LockResult::busy) r = ctl_->mutex.lock();
    if (r == shmkit::LockResult::acquired) return true;
    if (r != shmkit::LockResult::owner_died) {
      res.status = Status::not_recoverable;
      return false;
    }
    Journal& j = ctl_->journal;
    // relaxed: under the mutex, whose take-over (acquire) ordered us after
    // everything the dead holder stored (J1-J3).
    const std::uint64_t st = std::atomic_ref<std::uint64_t>(j.state).load(std::memory_order_relaxed);
    if (st == kCommitted && journal_valid(j)) {
      // A repair killed in turn leaves the journal committed: the next
      // locker rolls forward again (absolute values, trades by ring index).
      Order o{};
      o.id = j.order_id;
      roll_forward(&o, hook);
      set_state(j, kIdle);
      count(ctl_->rolled_forward);
      res.repair = Repair::rolled_forward;
    } else if (st == kFilling || st == kIdle) {
      set_state(j, kIdle);  // the book was not touched
      if (st == kFilling) {
        count(ctl_->rolled_back);
        res.repair = Repair::rolled_back;
      }
    } else {
      // Cannot be repaired: unlock without make_consistent(), which makes
      // the mutex not recoverable for every later locker (robust_mutex.hpp).
      res.status = Status::corrupt;
      (void)ctl_->mutex.unlock();
      return false;
    }
    (void)ctl_->mutex.make_consistent();
    return true;
  }

  // Every count and index a roll-forward would use, against the bounds.
  bool journal_valid(const Journal& j) const noexcept {
    if (j.n_writes > kMaxWrites || j.n_trades > kMaxTrades) return false;
    if (j.new_best_bid < kNoBid || j.new_best_bid >= kLevels) return false;
    if (j.new_best_ask < 0 || j.new_best_ask > kNoAsk) return false;
    for (std::uint64_t i = 0; i < j.n_writes; ++i) {
      if (j.writes[i].index >= 2 * static_cast<std::uint64_t>(kLevels)) return false;
    }
    const std::uint64_t w = trades_.write_index();
    return w >= j.ring_base && w - j.ring_base <= j.n_trades;
  }

  // Makes the book what the committed journal says (idempotent).
  void roll_forward(const Order* o, StepHook hook) noexcept {
    const Journal& j = ctl_->journal;
    apply_journal(*state_, j, o, hook);
    if (hook) hook(Step::book_done, *o);
    // Only the trades the ring does not have yet (push() advances the write
    // index last, so a push cut short is redone in the same slot).
    const std::uint64_t n = std::min(j.n_trades, kMaxTrades);
    for (std::uint64_t k = trades_.write_index() - j.ring_base; k < n; ++k) {
      trades_.push(j.trades[k]);
      if (hook && k == 0 && j.n_trades > 1) hook(Step::trade_pushed, *o);
    }
    top_.store(top_of(*state_));
    if (hook) hook(Step::top_stored, *o);
  }

  shmkit::TypedBlock block_;
  BookControl* ctl_;
  BookState* state_;
  shmkit::SeqLock<TopOfBook> top_;
  shmkit::BroadcastRing<Trade> trades_;
};

// ------------------------------------------------------------ a stream

// The deterministic order stream of the example, its test and the bench:
// order `id` of stream `seed` is a pure function of both, so a restarted
// writer regenerates exactly what its predecessor was applying. Prices
// cluster around a slowly moving mid, buys and sells overlap (so about half
// the limit orders trade), one order in eight is a cancel.
inline Order make_order(std::uint64_t seed, std::uint64_t id) noexcept {
  const std::uint64_t r = mix(seed * 0x9e3779b97f4a7c15ull + id);
  const std::int64_t mid = 128 + static_cast<std::int64_t>((mix(seed ^ (id / 512)) % 41)) - 20;
  Order o{};
  o.id = id;
  o.side = static_cast<std::uint32_t>(r & 1);
  o.type = (r >> 1) % 8 == 0 ? kCancel : kLimit;
  const std::int64_t off = static_cast<std::int64_t>((r >> 8) % 9);  // 0..8
  o.price = o.side == kBuy ? mid - 4 + off - 2 : mid + 4 - off + 2;
  o.qty = 1 + (r >> 20) % 100;
  return o;
}

}  // namespace order_book
