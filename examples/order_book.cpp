// examples/order_book.cpp — the order book of order_book.hpp, run the way it
// is meant to be used, and checked as a test:
//
//   * one block; reader processes poll the top of book through the SeqLock
//     (never taking the lock) and one reads every trade from the ring;
//   * writer processes apply one deterministic order stream under the
//     RobustMutex, and are SIGKILLed mid-update: first once at every Step of
//     apply() (several times each, via the step hook), then half-way
//     through the repair of a killed writer's committed update, then at random
//     moments; each time a new writer attaches, repairs (rolls the journal
//     back or forward) and carries on from the next order;
//   * every reader checks every snapshot it sees: its checksum (never torn),
//     bid < ask (never crossed), and that it equals the top of book of a
//     serial replay after that many orders; the trade reader checks the trade
//     stream against the replay's, trade by trade (none lost, none twice);
//   * at the end the whole book equals the serial replay's.
//
//   * with PYTHON given, python3 reads the final top of book from the block
//     with mmap and struct alone, as the header documents for readers
//     without shmkit.
//
//   order_book [ORDERS [READERS [RANDOM_KILLS [PYTHON]]]]
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "order_book.hpp"

namespace {

using namespace order_book;

constexpr std::uint64_t kSeed = 17;
constexpr int kKillsPerStep = 3;
constexpr unsigned kWatchdogSeconds = 240;

const char* step_name(Step s) {
  static const char* const names[kSteps] = {"locked",    "filling",      "committed",  "book_half",
                                            "book_done", "trade_pushed", "top_stored", "idle"};
  return names[static_cast<int>(s)];
}

// ---- the serial replay: the same stream applied in private memory
struct Replay {
  std::vector<TopOfBook> tops;  // tops[n]: the top of book after n orders
  std::vector<Trade> trades;
  std::vector<std::uint64_t> trades_of;  // trades made by order i
  BookState final{};
};

Replay replay(std::uint64_t orders) {
  Replay r;
  auto s = std::make_unique<BookState>();
  auto j = std::make_unique<Journal>();
  s->best_bid = kNoBid;
  s->best_ask = kNoAsk;
  r.tops.push_back(top_of(*s));
  for (std::uint64_t i = 0; i < orders; ++i) {
    compute(*s, make_order(kSeed, i), *j);
    apply_journal(*s, *j);
    r.trades.insert(r.trades.end(), j->trades, j->trades + j->n_trades);
    r.trades_of.push_back(j->n_trades);
    r.tops.push_back(top_of(*s));
  }
  r.final = *s;
  return r;
}

// ---- the watchdog: a hung run fails, kills its children, unlinks its block
char g_block[128];  // "/" + the block's name, for shm_unlink
pid_t g_children[64];
std::atomic<int> g_nchildren{0};
void on_alarm(int) {
  static const char msg[] = "order_book: FAIL: watchdog expired\n";
  (void)!::write(2, msg, sizeof msg - 1);
  for (int i = 0; i < g_nchildren.load(); ++i) ::kill(g_children[i], SIGKILL);
  (void)::shm_unlink(g_block);
  ::_exit(3);
}
pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a killed parent
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::printf("child %d: FAIL: %s\n", static_cast<int>(::getpid()), e.what());
    }
    std::fflush(nullptr);  // _exit does not flush
    ::_exit(rc);
  }
  const int n = g_nchildren.load();
  g_children[n % 64] = pid;
  g_nchildren.store(std::min(n + 1, 64));
  return pid;
}
int wait_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// ---- readers
int top_reader(const std::string& name, int id, const Replay& r, std::uint64_t orders) {
  OrderBook book = OrderBook::attach(name);
  auto reader = book.top_reader();
  std::uint64_t seen = 0, distinct = 0, torn = 0, crossed = 0, wrong = 0, backwards = 0, last = 0;
  for (;;) {
    TopOfBook t;
    if (!reader.try_read(t)) {  // a write in progress (or a dead writer's, until repaired)
      std::this_thread::yield();
      continue;
    }
    ++seen;
    if (t.check != top_check(t)) {
      ++torn;
    } else if (t.seq > orders || !(t == r.tops[t.seq])) {
      ++wrong;
    }
    if (t.bid_price >= 0 && t.ask_price >= 0 && t.bid_price >= t.ask_price) ++crossed;
    if (t.seq < last) ++backwards;
    if (t.seq != last) ++distinct;
    last = t.seq;
    if (t.seq >= orders) break;
    std::this_thread::yield();  // two cores for everyone: let the writer run
  }
  const bool ok = torn == 0 && crossed == 0 && wrong == 0 && backwards == 0;
  std::printf(
      "reader %d: %llu snapshots (%llu distinct), torn %llu, crossed %llu, not the replay's %llu, "
      "backwards %llu: %s\n",
      id, static_cast<unsigned long long>(seen), static_cast<unsigned long long>(distinct),
      static_cast<unsigned long long>(torn), static_cast<unsigned long long>(crossed),
      static_cast<unsigned long long>(wrong), static_cast<unsigned long long>(backwards), ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}

int trade_reader(const std::string& name, const Replay& r) {
  OrderBook book = OrderBook::attach(name);
  auto reader = book.trades_from(0);
  std::uint64_t n = 0, wrong = 0, lost = 0;
  while (n < r.trades.size()) {
    Trade t;
    const auto res = reader.read_for(t, std::chrono::milliseconds(100));
    if (res.status == shmkit::BroadcastStatus::lapped) {
      lost += res.lost;
      n += res.lost;
    } else if (res.status == shmkit::BroadcastStatus::ok) {
      if (!(t == r.trades[n])) ++wrong;
      ++n;
    }
  }
  const bool ok = wrong == 0 && lost == 0;
  std::printf("trade reader: %llu trades, %llu not the replay's, %llu lost: %s\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(wrong),
              static_cast<unsigned long long>(lost), ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}

// ---- writers
Step g_kill_step;
std::uint64_t g_kill_order = ~std::uint64_t{0};
void kill_hook(Step s, const Order& o) {
  if (s == g_kill_step && o.id == g_kill_order) ::raise(SIGKILL);
}

// Attaches, resumes the stream at the next order (repairing first if the
// last writer died), applies the rest.
int writer(const std::string& name, std::uint64_t orders, bool hooked, std::uint64_t kill_after_ns = 0) {
  OrderBook book = OrderBook::attach(name);
  std::uint64_t next = book.applied(hooked ? kill_hook : nullptr);  // repairs if the last writer died
  if (kill_after_ns != 0) {
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGKILL;
    timer_t timer;
    itimerspec when{};
    when.it_value.tv_sec = static_cast<time_t>(kill_after_ns / 1000000000);
    when.it_value.tv_nsec = static_cast<long>(kill_after_ns % 1000000000);
    if (::timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || ::timer_settime(timer, 0, &when, nullptr) != 0) {
      std::perror("timer");
      return 1;
    }
  }
  while (next < orders) {
    const ApplyResult res = book.apply(make_order(kSeed, next), hooked ? kill_hook : nullptr);
    if (res.status != Status::applied) {
      std::printf("writer: order %llu: status %d\n", static_cast<unsigned long long>(next),
                  static_cast<int>(res.status));
      return 1;
    }
    next = res.next;
  }
  return 0;
}

// The documented layout, read by a program that has no shmkit: python3's
// mmap and struct, as order_book.hpp tells a Python reader to (seq, unpack,
// seq again; keep it if both are equal and even). Returns what it printed.
std::string python_top(const std::string& python, const std::string& name) {
  static const char* const script =
      "import mmap, os, struct, sys\n"
      "fd = os.open('/dev/shm/' + sys.argv[1], os.O_RDONLY)\n"
      "m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)\n"
      "seq_at, top_at, fmt = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]\n"
      "while True:\n"
      "    s1, = struct.unpack_from('<Q', m, seq_at)\n"
      "    top = struct.unpack_from(fmt, m, top_at)\n"
      "    s2, = struct.unpack_from('<Q', m, seq_at)\n"
      "    if s1 == s2 and s1 % 2 == 0:\n"
      "        break\n"
      "print(' '.join(map(str, top)))\n";
  int out[2];
  if (::pipe(out) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    const std::string seq_at = std::to_string(kTopSeqOffset), top_at = std::to_string(kTopOffset);
    const std::string fmt(kTopStructFormat);
    ::execl(python.c_str(), python.c_str(), "-c", script, name.c_str(), seq_at.c_str(), top_at.c_str(),
            fmt.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  (void)wait_status(pid);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace

int run(int argc, char** argv) {
  const std::uint64_t orders = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
  const int readers = argc > 2 ? std::atoi(argv[2]) : 3;
  const int random_kills = argc > 3 ? std::atoi(argv[3]) : 100;
  std::snprintf(g_block, sizeof g_block, "/shmkit_example_book_%d_%llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count()));
  const std::string name = g_block + 1;
  std::signal(SIGALRM, on_alarm);
  ::alarm(kWatchdogSeconds);

  const Replay r = replay(orders);
  OrderBook book = OrderBook::create(name, 1u << 17);
  if (r.trades.size() > book.trade_capacity()) {
    std::printf("order_book: FAIL: %zu trades do not fit the ring\n", r.trades.size());
    book.unlink();
    return 1;
  }
  std::printf("order book \"%s\": %llu orders, %zu trades in the serial replay, %d top-of-book readers\n",
              name.c_str(), static_cast<unsigned long long>(orders), r.trades.size(), readers);

  std::vector<pid_t> reader_pids;
  for (int id = 0; id < readers; ++id) {
    reader_pids.push_back(spawn([&, id] { return top_reader(name, id, r, orders); }));
  }
  reader_pids.push_back(spawn([&] { return trade_reader(name, r); }));

  bool ok = true;
  // 1. A kill at every step of apply(), several orders each; the next writer
  // must make exactly the expected repair.
  int per_step[kSteps] = {};
  for (int rep = 0; rep < kKillsPerStep; ++rep) {
    for (int s = 0; s < kSteps; ++s) {
      const Step step = static_cast<Step>(s);
      std::uint64_t target = book.applied() + 5;
      // trade_pushed needs an order with two trades or more.
      while (step == Step::trade_pushed && target < orders && r.trades_of[target] < 2) ++target;
      if (target >= orders) break;
      g_kill_step = step;
      g_kill_order = target;
      const int st = wait_status(spawn([&] { return writer(name, orders, true); }));
      if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
        std::printf("writer meant to die at %s of order %llu: status %d: FAIL\n", step_name(step),
                    static_cast<unsigned long long>(target), st);
        ok = false;
        continue;
      }
      // The next writer repairs (it is killed at its next step, or not).
      const Stats before = book.stats();
      g_kill_order = ~std::uint64_t{0};
      const pid_t next = spawn([&] {
        OrderBook b = OrderBook::attach(name);
        return b.applied() == ~std::uint64_t{0} ? 1 : 0;  // applied() repairs
      });
      if (wait_status(next) != 0) ok = false;
      const Stats after = book.stats();
      const bool back = after.rolled_back == before.rolled_back + 1;
      const bool fwd = after.rolled_forward == before.rolled_forward + 1;
      const bool want_back = step == Step::filling;
      const bool want_fwd = step != Step::locked && step != Step::filling && step != Step::idle;
      if (back != want_back || fwd != want_fwd) {
        std::printf("killed at %s: the next writer %s: FAIL\n", step_name(step),
                    back  ? "rolled back"
                    : fwd ? "rolled forward"
                          : "found nothing to repair");
        ok = false;
      }
      ++per_step[s];
    }
  }
  std::printf("killed a writer at each step of apply():");
  for (int s = 0; s < kSteps; ++s) std::printf(" %s x%d", step_name(static_cast<Step>(s)), per_step[s]);
  std::printf("; each next writer rolled back (filling) or forward (committed..top_stored) as expected: %s\n",
              ok ? "ok" : "FAIL");

  // 1b. A writer killed while it repairs (rolling a committed journal
  // forward): the journal is still committed, and the next one repairs.
  int during_repair = 0;
  for (int rep = 0; rep < kKillsPerStep; ++rep) {
    const std::uint64_t target = book.applied() + 5;
    if (target >= orders) break;
    g_kill_step = Step::committed;
    g_kill_order = target;
    const int first = wait_status(spawn([&] { return writer(name, orders, true); }));
    g_kill_step = Step::book_half;  // the next writer dies half-way through its repair
    const int second = wait_status(spawn([&] { return writer(name, orders, true); }));
    const Stats before = book.stats();
    g_kill_order = ~std::uint64_t{0};
    const int third = wait_status(spawn([&] {
      OrderBook b = OrderBook::attach(name);
      return b.applied() == target + 1 ? 0 : 1;  // repaired: order `target` is in
    }));
    const Stats after = book.stats();
    const bool killed_twice = WIFSIGNALED(first) && WTERMSIG(first) == SIGKILL && WIFSIGNALED(second) &&
                              WTERMSIG(second) == SIGKILL;
    if (!killed_twice || third != 0 || after.rolled_forward != before.rolled_forward + 1) {
      std::printf("writer killed during a repair (order %llu): FAIL\n",
                  static_cast<unsigned long long>(target));
      ok = false;
    }
    ++during_repair;
  }
  std::printf("killed %d writers half-way through a roll-forward repair; the next writer repaired: %s\n",
              during_repair, ok ? "ok" : "FAIL");

  // 2. Kills at random moments (including inside SeqLock and ring stores).
  std::mt19937_64 rng(::getpid());
  const Stats before_random = book.stats();
  int killed = 0, odd = 0;
  for (int k = 0; k < random_kills; ++k) {
    // The writer arms a timer that SIGKILLs it 1-200 us after it starts
    // updating: the kill lands at whatever instruction it is running then
    // (an hrtimer interrupt), whoever else the two cores are running.
    const std::uint64_t after_ns = 1000 + rng() % 199000;
    const int st = wait_status(spawn([&] { return writer(name, orders, false, after_ns); }));
    if (WIFEXITED(st)) break;  // it finished the stream before the kill
    ++killed;
    TopOfBook t;
    if (!book.try_top(t)) ++odd;  // no writer alive: only a store cut short fails
  }
  const Stats after_random = book.stats();
  std::printf(
      "random kills: %d writers killed (%d inside a SeqLock store), %llu repairs rolled back, "
      "%llu rolled forward\n",
      killed, odd, static_cast<unsigned long long>(after_random.rolled_back - before_random.rolled_back),
      static_cast<unsigned long long>(after_random.rolled_forward - before_random.rolled_forward));

  // 3. A last writer finishes the stream.
  if (wait_status(spawn([&] { return writer(name, orders, false); })) != 0) {
    std::printf("the last writer failed: FAIL\n");
    ok = false;
  }
  for (pid_t p : reader_pids) {
    const int st = wait_status(p);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) ok = false;
  }
  auto final_state = std::make_unique<BookState>();
  const bool same =
      book.snapshot(*final_state) && std::memcmp(final_state.get(), &r.final, sizeof r.final) == 0;
  const Stats stats = book.stats();
  std::printf(
      "final book: %llu orders, %llu trades, best bid %lld, best ask %lld; %s the serial replay; "
      "repairs: %llu rolled back, %llu rolled forward\n",
      static_cast<unsigned long long>(final_state->applied),
      static_cast<unsigned long long>(final_state->trades), static_cast<long long>(final_state->best_bid),
      static_cast<long long>(final_state->best_ask), same ? "equals" : "DIFFERS FROM",
      static_cast<unsigned long long>(stats.rolled_back),
      static_cast<unsigned long long>(stats.rolled_forward));
  ok = ok && same;
  if (argc > 4) {
    const TopOfBook t = book.top();
    char want[256];
    std::snprintf(want, sizeof want, "%llu %lld %llu %lld %llu %llu %llu",
                  static_cast<unsigned long long>(t.seq), static_cast<long long>(t.bid_price),
                  static_cast<unsigned long long>(t.bid_size), static_cast<long long>(t.ask_price),
                  static_cast<unsigned long long>(t.ask_size), static_cast<unsigned long long>(t.trades),
                  static_cast<unsigned long long>(t.check));
    const std::string got = python_top(argv[4], name);
    const bool py_ok = got == want;
    std::printf("python3 struct.unpack_from('%s', block, %llu): %s: %s\n",
                std::string(kTopStructFormat).c_str(), static_cast<unsigned long long>(kTopOffset),
                got.c_str(), py_ok ? "equals top()" : "FAIL");
    ok = ok && py_ok;
  }
  book.unlink();
  if (::access(("/dev/shm/" + name).c_str(), F_OK) == 0) {
    std::printf("block still in /dev/shm: FAIL\n");
    ok = false;
  }
  std::printf("order_book: %s\n", ok ? "OK" : "FAIL");
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // the block is unlinked whatever failed
    std::printf("order_book: FAIL: %s\n", e.what());
    if (g_block[0] != '\0') (void)::shm_unlink(g_block);
    return 1;
  }
}
