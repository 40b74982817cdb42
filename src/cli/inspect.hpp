// src/cli/inspect.hpp — what `shmkit ls` and `shmkit show` know about a
// block: read-only, never trusting its bytes (a block that does not parse is
// reported, the tool never crashes on it).
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace shmkit::cli {

struct BlockInfo {
  std::string name;
  std::uint64_t size = 0;
  uid_t uid = 0;
  mode_t mode = 0;
  double age_seconds = 0;  // since the last status change (about creation)
  std::string kind;        // "ShareableList", "array", "value", "heap", ..., "unknown", "empty", "no access"
  std::string problem;     // why a shmkit block did not validate ("" if fine)
  std::vector<pid_t> users;  // live processes the tracker has registered for it
  // Registrants in another PID namespace (another container): pids of that
  // namespace, liveness unknown here (tracker.hpp).
  std::vector<pid_t> other_namespace_users;
  // A typed block's header fields (kind_number -1 for anything else): what
  // `ls` prints for a user kind, whose name alone ("user+N") says little.
  std::int64_t kind_number = -1;
  std::string type_name;  // BlockHeader::type_name, "" if the creator gave none
  std::uint64_t count = 0;
  std::string state;  // "ready", "initialising", "empty", "state N"
};

// Every entry of /dev/shm except POSIX semaphores (sem.*), sorted by name.
std::vector<BlockInfo> list_blocks();
BlockInfo inspect(const std::string& name);

// `shmkit show`: a human-readable description, or JSON. Returns false (and a
// description of the problem) for a block it cannot decode.
bool describe(const std::string& name, bool json, std::string& out);

// Every string printed comes from untrusted bytes (a /dev/shm name any
// local user chose, a header any process that maps the block wrote), so it
// goes through one of these (src/platform/printable.hpp):
//   json_escape: the inside of a JSON string: always valid JSON and UTF-8;
//     control and invisible characters as \uNNNN, and each byte that is not
//     part of valid UTF-8 as \udcNN (Python's surrogateescape:
//     os.fsencode(json.loads(...)) gives back the raw bytes).
//   text: for the text output: no control byte, valid UTF-8; a backslash
//     is doubled, control and invisible characters and invalid bytes become
//     \xNN / \uNNNN escapes.
std::string json_escape(const std::string& s);
std::string text(const std::string& s);

// The header's type name as stored (up to 24 bytes, up to the first NUL),
// raw: for the hash check; escape it to print it.
std::string header_type_name(const char (&field)[24]);

}  // namespace shmkit::cli
