// src/platform/printable.hpp — untrusted bytes (block names from /dev/shm, header
// fields another process wrote) made safe to show: on a terminal, in JSON,
// in a Python repr. Internal; header-only; no allocation beyond the result;
// never throws except std::bad_alloc.
//
// Any local user can create a name in /dev/shm, and any process that maps a
// block can write its header: what they hold is text only by convention. It
// may carry terminal escape sequences (ESC [ ..., a C1 CSI), invisible or
// reordering characters (bidi overrides) and bytes that are not UTF-8.
//
//   printable(s)     for text output: the result holds no control character
//                    and is valid UTF-8. Printable UTF-8 is kept; a backslash
//                    becomes "\\"; a control or invisible character (below)
//                    becomes \xNN if ASCII (C0, DEL), else \uNNNN or
//                    \UNNNNNNNN; a byte that is not part of valid UTF-8
//                    becomes \xNN (always 80-ff, so never confused with an
//                    ASCII control's). Distinct inputs stay distinct (the
//                    backslash itself is doubled).
//   json_string(s)   the inside of a JSON string (RFC 8259): '"' and '\'
//                    escaped, every control or invisible character as
//                    \uNNNN, other UTF-8 kept; a byte that is not part of
//                    valid UTF-8 becomes \udcNN (U+DC00 plus the byte: the
//                    lone surrogate of Python's "surrogateescape", so Python's
//                    json.loads() accepts it and os.fsencode() of the string
//                    gives back the original bytes). The result is ASCII plus
//                    valid UTF-8, never a raw control byte.
//   hidden(cp)       the characters escaped by both: C0 and C1 controls, DEL,
//                    and the separators and format characters that are
//                    invisible or change how text is laid out (no-break and
//                    other non-ASCII spaces, soft hyphen, zero-width
//                    characters, line/paragraph separators, bidi embeddings,
//                    overrides and isolates, word joiners, BOM, tag
//                    characters). All of them are also escaped by Python's
//                    repr() (str.isprintable() is false for them).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace shmkit::detail {

inline bool hidden(char32_t cp) noexcept {
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return true;
  if (cp == 0x061c || cp == 0x1680 || cp == 0x180e) return true;
  if (cp >= 0x2000 && cp <= 0x200f) return true;  // spaces, zero-width, LRM/RLM
  if (cp >= 0x2028 && cp <= 0x202f) return true;  // separators, bidi embeddings/overrides, NNBSP
  if (cp >= 0x205f && cp <= 0x206f) return true;  // MMSP, joiners, invisible operators, isolates
  if (cp == 0x3000 || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb)) return true;
  if (cp >= 0xe0000 && cp <= 0xe007f) return true;  // tag characters
  return false;
}

// The UTF-8 sequence at s[i]: its code point and length, or length 0 if the
// byte at s[i] does not start a valid, shortest-form sequence of a scalar
// value (no surrogates, nothing above U+10FFFF).
inline std::size_t utf8_at(std::string_view s, std::size_t i, char32_t& cp) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  std::size_t n = 0;
  char32_t min = 0;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, cp = c & 0x07, min = 0x10000;
  else
    return 0;
  if (s.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

inline void append_escape(std::string& out, const char* format, unsigned value) {
  char buf[16];
  std::snprintf(buf, sizeof buf, format, value);
  out += buf;
}

inline std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const std::size_t n = utf8_at(s, i, cp);
    if (n == 0) {
      append_escape(out, "\\x%02x", static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    if (cp == '\\')
      out += "\\\\";
    else if (hidden(cp))
      append_escape(out,
                    cp < 0x80      ? "\\x%02x"
                    : cp < 0x10000 ? "\\u%04x"
                                   : "\\U%08x",
                    static_cast<unsigned>(cp));
    else
      out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

inline std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const std::size_t n = utf8_at(s, i, cp);
    if (n == 0) {
      append_escape(out, "\\u%04x", 0xdc00u + static_cast<unsigned char>(s[i]));  // surrogateescape
      ++i;
      continue;
    }
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (!hidden(cp)) {
          out.append(s.substr(i, n));
        } else if (cp < 0x10000) {
          append_escape(out, "\\u%04x", static_cast<unsigned>(cp));
        } else {  // a tag character: a UTF-16 surrogate pair, as JSON spells it
          const unsigned v = static_cast<unsigned>(cp) - 0x10000;
          append_escape(out, "\\u%04x", 0xd800u + (v >> 10));
          append_escape(out, "\\u%04x", 0xdc00u + (v & 0x3ff));
        }
    }
    i += n;
  }
  return out;
}

// `s` in single quotes, printable(): for messages that name a block.
inline std::string printable_quoted(std::string_view s) { return "'" + printable(s) + "'"; }

}  // namespace shmkit::detail
