// libFuzzer target for the SharedMemoryManager wire format, on plain bytes
// (no system calls): src/manager/protocol.hpp.
//
// Input: one mode byte, then a byte stream as a peer would send it. The
// stream is split into frames exactly as the server and client do (the cap
// is the handshake cap for odd modes, the full cap for even ones); every
// frame is fed to every decoder. Checks:
//   * peek_frame never reports a frame longer than the buffer, and a ready
//     frame always holds its op byte;
//   * a request or reply that decodes re-encodes to exactly the same bytes
//     (the format is canonical: nothing is ignored, nothing is lost);
//   * a handshake message that decodes re-encodes to bytes that decode to
//     the same fields (its reserved field is ignored on purpose);
//   * decoders only ever fail by returning nullopt (ASan/UBSan catch any
//     read outside the frame, which lives in a buffer of exactly its size).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "manager/protocol.hpp"

namespace {

namespace proto = shmkit::detail::proto;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_manager_frames: %s\n", what);
    std::abort();
  }
}

proto::Frame whole(const std::vector<std::uint8_t>& bytes) {
  const auto head = proto::peek_frame(bytes, proto::kMaxFrame);
  check(head.status == proto::FrameStatus::ready && head.total == bytes.size(),
        "an encoded message is not exactly one frame");
  return proto::frame_at(bytes, head.total);
}

void exact_roundtrip(const proto::Frame& f, const std::vector<std::uint8_t>& again) {
  const proto::Frame g = whole(again);
  check(g.op == f.op, "re-encoded op differs");
  check(g.body.size() == f.body.size() &&
            (f.body.empty() || std::memcmp(g.body.data(), f.body.data(), f.body.size()) == 0),
        "re-encoded body differs");
}

void feed(const proto::Frame& f) {
  if (auto m = proto::decode_request(f)) exact_roundtrip(f, proto::encode(*m));
  if (auto m = proto::decode_reply(f)) exact_roundtrip(f, proto::encode(*m));
  if (auto m = proto::decode_hello(f)) {
    auto again = proto::decode_hello(whole(proto::encode(*m)));
    check(again && again->magic == m->magic && again->version == m->version && again->nonce == m->nonce,
          "hello does not round-trip");
  }
  if (auto m = proto::decode_auth(f)) {
    auto again = proto::decode_auth(whole(proto::encode(*m)));
    check(again && again->magic == m->magic && again->version == m->version && again->nonce == m->nonce &&
              again->mac == m->mac,
          "auth does not round-trip");
  }
  if (auto m = proto::decode_auth_ok(f)) exact_roundtrip(f, proto::encode(*m));
  if (auto m = proto::decode_auth_fail(f)) exact_roundtrip(f, proto::encode(*m));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t cap = (data[0] & 1) ? proto::kMaxHandshakeFrame : proto::kMaxFrame;
  // The stream in a buffer of exactly its size.
  std::vector<std::uint8_t> stream(data + 1, data + size);
  std::size_t off = 0;
  while (off < stream.size()) {
    const std::span<const std::uint8_t> rest(stream.data() + off, stream.size() - off);
    const proto::FrameHead head = proto::peek_frame(rest, cap);
    if (head.status != proto::FrameStatus::ready) break;  // the server drops or waits
    check(head.total >= proto::kLengthSize + 1 && head.total <= rest.size(),
          "peek_frame: ready frame out of bounds");
    // Each frame in its own exact-size buffer, so ASan sees any overread.
    const std::vector<std::uint8_t> frame(rest.begin(),
                                          rest.begin() + static_cast<std::ptrdiff_t>(head.total));
    feed(proto::frame_at(frame, frame.size()));
    off += head.total;
  }
  return 0;
}
