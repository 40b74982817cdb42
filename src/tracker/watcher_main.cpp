// shmkit-watcher: the resource tracker's watcher program (shmkit/tracker.hpp).
// Started by the library with posix_spawn, never by hand.
#include "tracker/watcher.hpp"

int main(int argc, char** argv) { return shmkit::tracker::detail::watcher_main(argc, argv); }
