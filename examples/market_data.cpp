// examples/market_data.cpp — market-data fan-out.
//
// One publisher writes quotes into a BroadcastRing (every quote, in order)
// and the latest one into a SeqLock (top of book). Three subscriber
// processes attach both by name. Two keep up; the third is slow, gets lapped
// by the writer (which never waits for readers) and learns exactly how many
// quotes it lost. Every quote carries a checksum, so a torn read would show;
// every subscriber checks received + lost == published.
//
//   market_data [QUOTES]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <shmkit/lockfree/broadcast_ring.hpp>
#include <shmkit/lockfree/seqlock.hpp>

namespace {

struct Quote {
  std::uint64_t seq;
  char symbol[8];
  double bid, ask;
  std::uint64_t check;  // a function of the fields above: detects torn reads
};

std::uint64_t checksum(const Quote& q) {
  std::uint64_t bid, ask, sym;
  std::memcpy(&bid, &q.bid, 8);
  std::memcpy(&ask, &q.ask, 8);
  std::memcpy(&sym, q.symbol, 8);
  return (q.seq * 0x9e3779b97f4a7c15ull) ^ bid ^ (ask << 1) ^ sym;
}

Quote make(std::uint64_t seq) {
  Quote q{};
  q.seq = seq;
  std::memcpy(q.symbol, seq % 2 ? "ACME\0\0\0" : "INIT\0\0\0", 8);
  q.bid = 100.0 + static_cast<double>(seq % 500) * 0.01;
  q.ask = q.bid + 0.02;
  q.check = checksum(q);
  return q;
}

constexpr std::uint64_t kEnd = ~std::uint64_t{0};

int subscriber(int id, const std::string& ring_name, const std::string& top_name, bool slow) {
  auto ring = shmkit::BroadcastRing<Quote>::attach(ring_name);
  auto top = shmkit::SeqLock<Quote>::attach(top_name);
  auto reader = ring.reader_at(0);  // from the first quote
  std::uint64_t received = 0, lost = 0, laps = 0, next = 0, torn = 0;
  for (;;) {
    Quote q;
    auto r = reader.read_for(q, std::chrono::milliseconds(200));
    if (r.status == shmkit::BroadcastStatus::lapped) {
      ++laps;
      lost += r.lost;
      next += r.lost;
      continue;
    }
    if (r.status == shmkit::BroadcastStatus::empty) {
      if (top.read().seq == kEnd) break;  // publisher finished and nothing is left
      continue;
    }
    if (q.seq == kEnd) break;
    if (q.check != checksum(q)) ++torn;
    if (q.seq != next) {
      std::printf("subscriber %d: expected quote %llu, got %llu\n", id, static_cast<unsigned long long>(next),
                  static_cast<unsigned long long>(q.seq));
      return 1;
    }
    ++next;
    ++received;
    if (slow && received % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const Quote last = top.read();                           // the SeqLock never returns a torn value
  const std::uint64_t published = ring.write_index() - 1;  // minus the end marker
  const bool exact = received + lost == published;
  std::printf(
      "subscriber %d%s: received %llu, lapped %llu times, lost %llu, torn %llu; "
      "received + lost %s published (%llu); top of book %s\n",
      id, slow ? " (slow)" : "", static_cast<unsigned long long>(received),
      static_cast<unsigned long long>(laps), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(torn), exact ? "==" : "!=", static_cast<unsigned long long>(published),
      last.check == checksum(last) ? "consistent" : "TORN");
  std::fflush(stdout);  // the caller leaves with _exit
  return exact && torn == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t quotes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
  const std::string ring_name = "shmkit_example_quotes_" + std::to_string(::getpid());
  const std::string top_name = "shmkit_example_top_" + std::to_string(::getpid());
  auto ring = shmkit::BroadcastRing<Quote>::create(ring_name, 1024);
  auto top = shmkit::SeqLock<Quote>::create(top_name, make(0));

  int ready[2];
  if (::pipe(ready) != 0) return 1;
  std::vector<pid_t> subs;
  for (int id = 1; id <= 3; ++id) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      char c = 'r';
      (void)!::write(ready[1], &c, 1);
      ::_exit(subscriber(id, ring_name, top_name, id == 3));
    }
    subs.push_back(pid);
  }
  for (int i = 0; i < 3; ++i) {
    char c;
    (void)!::read(ready[0], &c, 1);
  }
  // A feed is paced: bursts of 512 quotes, then a short pause. The fast
  // subscribers keep up; the slow one (2 ms naps) is lapped.
  for (std::uint64_t s = 0; s < quotes; ++s) {
    Quote q = make(s);
    ring.push(q);
    top.store(q);
    if (s % 512 == 511) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  Quote end = make(0);
  end.seq = kEnd;
  end.check = checksum(end);
  ring.push(end);
  top.store(end);
  std::printf("publisher: %llu quotes into a ring of %llu\n", static_cast<unsigned long long>(quotes),
              static_cast<unsigned long long>(ring.capacity()));
  std::fflush(stdout);
  int failures = 0;
  for (pid_t p : subs) {
    int status = 0;
    ::waitpid(p, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  shmkit::SharedMemory::unlink(ring_name);
  shmkit::SharedMemory::unlink(top_name);
  std::printf("publisher: %s\n", failures == 0 ? "all subscribers accounted for every quote" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
