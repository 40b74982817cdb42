#include "cli/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <map>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/platform.hpp"
#include "platform/printable.hpp"
#include "shmkit/detail/shared_object.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/byte_queue.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::cli {
namespace {

using shmkit::detail::printable;

constexpr std::size_t kShowValues = 16;

SharedMemory open_ro(const std::string& name) {
  SharedMemory::Options ro;
  ro.read_only = true;
  return SharedMemory::attach(name, ro);
}

struct Users {
  std::vector<pid_t> live, other_namespace;
};
std::map<std::string, Users> tracked_users() {
  std::map<std::string, Users> users;
  try {
    for (const auto& r : tracker::registrations()) {
      if (r.alive) users[r.block].live.push_back(r.pid);
      if (!r.judged) users[r.block].other_namespace.push_back(r.pid);
    }
  } catch (const std::exception&) {
    // No readable registry: no user information.
  }
  return users;
}

// A validated snapshot of a typed block's header, or a reason it is not one.
bool typed_header(const SharedMemory& shm, BlockHeader& h, std::string& problem) {
  if (shm.size() < sizeof(BlockHeader)) return false;
  std::memcpy(&h, shm.data(), sizeof h);
  if (h.magic != BlockHeader::kMagic) return false;
  try {
    validate_block_header(h, shm.size(), "block " + shm.name());
    if (h.state != BlockHeader::kReady) problem = "not initialised (state " + std::to_string(h.state) + ")";
  } catch (const std::invalid_argument& e) {
    problem = e.what();
  }
  return true;
}

std::string hex_dump(const std::byte* p, std::size_t n) {
  std::string out;
  char line[128];
  for (std::size_t off = 0; off < n; off += 16) {
    int k = std::snprintf(line, sizeof line, "%08zx ", off);
    std::string ascii;
    for (std::size_t i = off; i < off + 16; ++i) {
      if (i < n) {
        auto b = static_cast<unsigned char>(p[i]);
        k += std::snprintf(line + k, sizeof line - static_cast<std::size_t>(k), " %02x", b);
        ascii += (b >= 32 && b < 127) ? static_cast<char>(b) : '.';
      } else {
        k += std::snprintf(line + k, sizeof line - static_cast<std::size_t>(k), "   ");
      }
    }
    out += line;
    out += "  |" + ascii + "|\n";
  }
  return out;
}

// One element of a known typecode, as Python would print it.
std::string decode(char typecode, const std::byte* p, std::size_t size) {
  auto as = [&](auto zero) {
    decltype(zero) v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  auto fits = [&](std::size_t n) { return size == n; };
  switch (typecode) {
    case 'c':
      if (fits(1)) return python_repr(Item(Bytes(std::string(1, as(char{})))));
      break;
    case 'b':
      if (fits(1)) return std::to_string(as(std::int8_t{}));
      break;
    case 'B':
      if (fits(1)) return std::to_string(as(std::uint8_t{}));
      break;
    case 'h':
      if (fits(2)) return std::to_string(as(std::int16_t{}));
      break;
    case 'H':
      if (fits(2)) return std::to_string(as(std::uint16_t{}));
      break;
    case 'i':
      if (fits(4)) return std::to_string(as(std::int32_t{}));
      break;
    case 'I':
      if (fits(4)) return std::to_string(as(std::uint32_t{}));
      break;
    case 'q':
      if (fits(8)) return std::to_string(as(std::int64_t{}));
      break;
    case 'Q':
      if (fits(8)) return std::to_string(as(std::uint64_t{}));
      break;
    case 'f':
      if (fits(4)) return python_repr(Item(static_cast<double>(as(float{}))));
      break;
    case 'd':
      if (fits(8)) return python_repr(Item(as(double{})));
      break;
    case '?':
      if (fits(1)) return as(std::uint8_t{}) ? "True" : "False";
      break;
    default:
      break;
  }
  return "0x" + platform::hex(p, size);
}

std::string json_item(const Item& item) {
  struct V {
    std::string operator()(std::monostate) const { return "null"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      if (!std::isfinite(d)) return "\"" + python_repr(Item(d)) + "\"";
      return python_repr(Item(d));
    }
    std::string operator()(const std::string& s) const { return "\"" + json_escape(s) + "\""; }
    std::string operator()(const Bytes& b) const {
      return "{\"bytes_hex\": \"" + platform::hex(b.data(), b.size()) + "\"}";
    }
  };
  return std::visit(V{}, item);
}

// A queue's depth, a ring's published count, a seqlock's version: read from
// the control words in the block's prefix (read-only mapping, atomic loads;
// the prefix was bounds-checked with the header). Empty if the kind has none
// or the prefix is too small for its control struct.
template <class Control>
const Control* control_of(const SharedMemory& shm, const BlockHeader& h) {
  if (h.prefix_size < sizeof(Control)) return nullptr;
  return reinterpret_cast<const Control*>(static_cast<const std::byte*>(shm.data()) + BlockHeader::kSize);
}

std::vector<std::pair<std::string, std::uint64_t>> live_fields(const SharedMemory& shm,
                                                               const BlockHeader& h) {
  using K = BlockKind;
  std::vector<std::pair<std::string, std::uint64_t>> f;
  auto depth = [&](std::uint64_t tail, std::uint64_t head) {
    f.emplace_back("depth", tail >= head ? tail - head : 0);  // forged indices: 0, never garbage
    f.emplace_back("pushed", tail);
    f.emplace_back("popped", head);
  };
  switch (static_cast<K>(h.kind)) {
    case K::spsc_queue:
      if (auto* c = control_of<SpscControl>(shm, h)) depth(c->tail.load(), c->head.load());
      break;
    case K::mpmc_queue:
      if (auto* c = control_of<MpmcControl>(shm, h)) {
        depth(c->tail.load(), c->head.load());
        // What survivors stepped over after a claimant died (MpmcQueue::losses()).
        f.emplace_back("lost_producer_claims", c->producer_claims_skipped.load());
        f.emplace_back("released_consumer_claims", c->consumer_claims_released.load());
      }
      break;
    case K::byte_queue:
      if (auto* c = control_of<ByteQueueControl>(shm, h)) {
        // Positions count 64-byte cells, not messages.
        f.emplace_back("cells_pushed", c->tail.load());
        f.emplace_back("cells_popped", c->head.load());
        f.emplace_back("out_of_line_blocks_made", c->out_of_line_counter.load());
        f.emplace_back("lost_producer_claims", c->producer_claims_skipped.load());
        f.emplace_back("released_consumer_claims", c->consumer_claims_released.load());
        f.emplace_back("corrupt_records", c->corrupt_records.load());
      }
      break;
    case K::broadcast_ring:
      if (auto* c = control_of<BroadcastControl>(shm, h)) f.emplace_back("published", c->write_index.load());
      break;
    case K::seqlock:
      if (auto* c = control_of<SeqLockControl>(shm, h)) f.emplace_back("version", c->seq.load());
      break;
    default:
      break;
  }
  return f;
}

std::string state_name(std::uint32_t state) {
  switch (state) {
    case BlockHeader::kReady:
      return "ready";
    case BlockHeader::kInitialising:
      return "initialising";
    case BlockHeader::kEmpty:
      return "empty";
    default:
      return "state " + std::to_string(state);
  }
}

constexpr std::size_t kShowPayloadBytes = 256;

// A user kind (BlockKind::user and up): shmkit knows only the header, so it
// prints every header field a user needs to recognise the block (kind
// number, type name checked against the type hash, count, state, sizes) and
// the start of the payload in hex. The header was validated; the payload
// offset and size fit the mapping.
std::string describe_user(const SharedMemory& shm, const BlockHeader& h, bool json) {
  const std::string type = header_type_name(h.type_name);
  const bool matches = !type.empty() && fnv1a(type) == h.type_hash;
  const std::string type_check = type.empty()                        ? "none recorded"
                                 : matches                           ? "matches the type hash"
                                 : type.size() == sizeof h.type_name ? "cut to 24 bytes, not checked"
                                                                     : "does NOT match the type hash";
  // The typecode byte as it is (escaped on output): a forged one may be any byte.
  const std::string typecode = h.typecode != 0 ? std::string(1, h.typecode) : std::string("struct");
  const auto* payload = static_cast<const std::byte*>(shm.data()) + h.payload_offset;
  const std::size_t shown =
      static_cast<std::size_t>(std::min<std::uint64_t>(h.payload_size, kShowPayloadBytes));
  char hash[24];
  std::snprintf(hash, sizeof hash, "0x%016llx", static_cast<unsigned long long>(h.type_hash));
  std::ostringstream o;
  if (json) {
    o << "{\"name\": \"" << json_escape(shm.name()) << "\", \"kind\": \"" << block_kind_name(h.kind)
      << "\", \"kind_number\": " << h.kind << ", \"type_name\": \"" << json_escape(type)
      << "\", \"type_name_matches_hash\": " << (matches ? "true" : "false") << ", \"type_hash\": \"" << hash
      << "\", \"typecode\": \"" << json_escape(typecode) << "\", \"elem_size\": " << h.elem_size
      << ", \"elem_align\": " << h.elem_align << ", \"count\": " << h.count << ", \"state\": \""
      << state_name(h.state) << "\", \"prefix_size\": " << h.prefix_size
      << ", \"payload_offset\": " << h.payload_offset << ", \"payload_size\": " << h.payload_size
      << ", \"params\": [" << h.param[0] << ", " << h.param[1] << ", " << h.param[2] << ", " << h.param[3]
      << "], \"payload_hex\": \"" << platform::hex(payload, shown) << "\"}\n";
    return o.str();
  }
  o << printable(shm.name()) << ": shmkit " << block_kind_name(h.kind) << " (kind " << h.kind << "), type \""
    << printable(type) << "\" (" << type_check << ", " << hash << "), " << printable(typecode) << " element "
    << h.elem_size << " bytes (align " << h.elem_align << "), count " << h.count << ", state "
    << state_name(h.state) << "\n";
  o << "prefix " << h.prefix_size << " bytes at offset " << BlockHeader::kSize << ", payload "
    << h.payload_size << " bytes at offset " << h.payload_offset << ", params " << h.param[0] << " "
    << h.param[1] << " " << h.param[2] << " " << h.param[3] << "\n";
  o << "payload" << (shown < h.payload_size ? " (first " + std::to_string(shown) + " bytes)" : "") << ":\n"
    << hex_dump(payload, shown);
  return o.str();
}

bool describe_typed(const SharedMemory& shm, const BlockHeader& h, bool json, std::string& out) {
  if (h.kind >= static_cast<std::uint32_t>(BlockKind::user)) {
    out = describe_user(shm, h, json);
    return true;
  }
  const std::string kind = block_kind_name(h.kind);
  const bool object = h.kind == static_cast<std::uint32_t>(BlockKind::value) ||
                      h.kind == static_cast<std::uint32_t>(BlockKind::array);
  const std::uint64_t elem_bytes = object ? h.param[2] : h.elem_size;
  std::vector<std::string> values;
  std::string typecode = h.typecode != 0 ? std::string(1, h.typecode) : std::string("struct");
  if (object && elem_bytes >= h.elem_size && elem_bytes > 0 && h.count <= h.payload_size / elem_bytes) {
    const auto* base = static_cast<const std::byte*>(shm.data()) + h.payload_offset;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(h.count, kShowValues); ++i) {
      values.push_back(decode(h.typecode, base + i * elem_bytes, h.elem_size));
    }
  }
  std::ostringstream o;
  if (json) {
    o << "{\"name\": \"" << json_escape(shm.name()) << "\", \"kind\": \"" << kind << "\", \"typecode\": \""
      << json_escape(typecode) << "\", \"elem_size\": " << h.elem_size << ", \"count\": " << h.count
      << ", \"payload_offset\": " << h.payload_offset << ", \"payload_size\": " << h.payload_size;
    if (object) o << ", \"lock\": \"" << detail::lock_kind_name(h.param[0]) << "\"";
    if (object) {
      o << ", \"values\": [";
      for (std::size_t i = 0; i < values.size(); ++i)
        o << (i ? ", " : "") << "\"" << json_escape(values[i]) << "\"";
      o << "]";
    }
    for (const auto& [k, v] : live_fields(shm, h)) o << ", \"" << k << "\": " << v;
    o << "}\n";
  } else {
    const bool ring = h.kind == static_cast<std::uint32_t>(BlockKind::spsc_queue) ||
                      h.kind == static_cast<std::uint32_t>(BlockKind::mpmc_queue) ||
                      h.kind == static_cast<std::uint32_t>(BlockKind::broadcast_ring);
    o << printable(shm.name()) << ": shmkit " << kind << ", " << h.count
      << (object ? " x "
          : ring ? " slots (capacity), "
                 : " (count), ")
      << (object ? "typecode '" + printable(typecode) + "'" : "") << (object ? ", " : "") << "element "
      << h.elem_size << " bytes, payload " << h.payload_size << " bytes at offset " << h.payload_offset
      << "\n";
    if (object) {
      o << "lock: " << detail::lock_kind_name(h.param[0]) << "\n";
      o << "values: ";
      for (std::size_t i = 0; i < values.size(); ++i) o << (i ? ", " : "") << values[i];
      if (h.count > values.size()) o << ", ... (" << h.count << " in all)";
      o << "\n";
    }
    const auto fields = live_fields(shm, h);
    for (std::size_t i = 0; i < fields.size(); ++i) {
      o << (i ? ", " : "") << fields[i].first << " " << fields[i].second
        << (i + 1 == fields.size() ? "\n" : "");
    }
  }
  out = o.str();
  return true;
}

}  // namespace

std::string header_type_name(const char (&field)[24]) {
  return std::string(field, ::strnlen(field, sizeof field));
}

std::string json_escape(const std::string& s) { return shmkit::detail::json_string(s); }

std::string text(const std::string& s) { return printable(s); }

BlockInfo inspect(const std::string& name) {
  BlockInfo info;
  info.name = name;
  struct stat st {};
  if (::lstat(platform::dev_shm_path(name).c_str(), &st) == 0) {
    info.size = static_cast<std::uint64_t>(st.st_size);
    info.uid = st.st_uid;
    info.mode = st.st_mode & 07777;
    info.age_seconds = std::difftime(std::time(nullptr), st.st_ctime);
    if (!S_ISREG(st.st_mode)) {
      info.kind = S_ISLNK(st.st_mode) ? "symlink" : "not a file";
      return info;
    }
  }
  if (info.size == 0) {
    info.kind = "empty";
    return info;
  }
  try {
    SharedMemory shm = open_ro(name);
    BlockHeader h;
    if (typed_header(shm, h, info.problem)) {
      info.kind = block_kind_name(h.kind);
      info.kind_number = h.kind;
      info.type_name = header_type_name(h.type_name);
      info.count = h.count;
      info.state = state_name(h.state);
    } else {
      try {
        // format() checks every item's format and code, which attach
        // leaves to each access.
        (void)ShareableList::attach(std::move(shm)).format();
        info.kind = "ShareableList";
      } catch (const std::exception&) {
        info.kind = "unknown";
      }
    }
  } catch (const std::system_error& e) {
    info.kind = e.code().value() == EACCES ? "no access" : "unreadable";
  } catch (const std::exception&) {
    info.kind = "unreadable";
  }
  return info;
}

std::vector<BlockInfo> list_blocks() {
  std::vector<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == ".." || n.starts_with("sem.")) continue;
      names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  auto users = tracked_users();
  std::vector<BlockInfo> out;
  for (const auto& n : names) {
    BlockInfo b = inspect(n);
    if (auto it = users.find(n); it != users.end()) {
      b.users = it->second.live;
      b.other_namespace_users = it->second.other_namespace;
    }
    out.push_back(std::move(b));
  }
  return out;
}

bool describe(const std::string& name, bool json, std::string& out) {
  SharedMemory shm = open_ro(name);  // throws with a message naming the block
  BlockHeader h;
  std::string problem;
  if (typed_header(shm, h, problem)) {
    if (!problem.empty()) {
      out = json ? "{\"name\": \"" + json_escape(name) + "\", \"error\": \"" + json_escape(problem) + "\"}\n"
                 : printable(name) + ": a shmkit block that does not validate: " + printable(problem) + "\n";
      return false;
    }
    return describe_typed(shm, h, json, out);
  }
  try {
    const std::size_t size = shm.size();
    ShareableList sl = ShareableList::attach(std::move(shm));
    std::ostringstream o;
    if (json) {
      o << "{\"name\": \"" << json_escape(name) << "\", \"kind\": \"ShareableList\", \"format\": \""
        << json_escape(sl.format()) << "\", \"items\": [";
      for (std::size_t i = 0; i < sl.size(); ++i)
        o << (i ? ", " : "") << json_item(sl.get(static_cast<std::ptrdiff_t>(i)));
      o << "]}\n";
    } else {
      // CPython's repr(ShareableList): ShareableList([...], name='...')
      o << "ShareableList([";
      for (std::size_t i = 0; i < sl.size(); ++i)
        o << (i ? ", " : "") << python_repr(sl.get(static_cast<std::ptrdiff_t>(i)));
      o << "], name=" << python_repr(Item(name)) << ")\n";
      o << "format: " << printable(sl.format()) << "\n";
      o << "size: " << size << " bytes, " << sl.size() << " items\n";
    }
    out = o.str();
    return true;
  } catch (const std::invalid_argument&) {
    // Not a ShareableList either: raw bytes.
  }
  SharedMemory raw = open_ro(name);
  const std::size_t n = std::min<std::size_t>(raw.size(), 256);
  if (json) {
    out = "{\"name\": \"" + json_escape(name) +
          "\", \"kind\": \"unknown\", \"size\": " + std::to_string(raw.size()) + ", \"head_hex\": \"" +
          platform::hex(raw.data(), n) + "\"}\n";
  } else {
    out = printable(name) + ": unknown contents, " + std::to_string(raw.size()) + " bytes; the first " +
          std::to_string(n) + ":\n" + hex_dump(raw.buf().data(), n);
  }
  return true;
}

}  // namespace shmkit::cli
