// src/tracker/watcher.hpp — this process's watcher: ensure_watcher() starts
// it, watcher_main() is the entry point of the shmkit-watcher program
// (src/tracker/watcher_main.cpp). Both are implemented in watcher.cpp, over
// the registry of registry.hpp. Internal.
//
// Protocol (kWatcherProtocol): the library posix_spawns
//   shmkit-watcher <protocol> <registry> <pid> <start_time> <pidns_inode> <pidns_device>
// with descriptor 3 the write end of a pipe and descriptor 4 the registry
// (the very file the registrant registers in, even if its name goes). The
// program closes every other descriptor above 2, forks once (its parent
// exits at once, so the registrant reaps it and the watcher is never the
// registrant's child), calls setsid, opens a pidfd of the registrant, maps
// and validates the registry, writes "ok\n" (or "error: ...\n") on
// descriptor 3 and closes it. When the registrant dies it sweeps the
// registrant's entries, then reports what it unlinked on stderr (SIGPIPE
// ignored; see tracker.hpp).
#pragma once

namespace shmkit::tracker::detail {

inline constexpr int kWatcherProtocol = 1;

struct Registry;
struct Self;
// Starts this process's watcher once per process (a fork child starts its
// own) and waits for its "ok". Throws std::system_error naming the program
// on any failure. `me` is self(), which the caller has just read (it costs a
// getpid).
void ensure_watcher(Registry& registry, const Self& me);

int watcher_main(int argc, char** argv);

}  // namespace shmkit::tracker::detail
