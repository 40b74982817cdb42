// src/list/python_repr.cpp — items as Python sees them: python_repr() (its
// repr(), for messages and for `shmkit show`) and python_equal() (its ==)
// of shmkit/shareable_list.hpp.
#include <charconv>
#include <cmath>
#include <string>

#include "platform/printable.hpp"
#include "shmkit/shareable_list.hpp"

namespace shmkit {

namespace {

// Python's float repr: shortest round-trip digits, fixed notation for
// decimal exponents in [-4, 16), else d.ddde+XX.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  std::string out;
  std::size_t pos = 0;
  if (sci[0] == '-') {
    out += '-';
    pos = 1;
  }
  const std::size_t e = sci.find('e');
  std::string digits;
  for (std::size_t k = pos; k < e; ++k) {
    if (sci[k] != '.') digits += sci[k];
  }
  int exp = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-exp - 1), '0');
      out += digits;
    } else {
      const auto int_digits = static_cast<std::size_t>(exp) + 1;
      if (digits.size() <= int_digits) {
        out += digits;
        out.append(int_digits - digits.size(), '0');
        out += ".0";
      } else {
        out += digits.substr(0, int_digits);
        out += '.';
        out += digits.substr(int_digits);
      }
    }
    return out;
  }
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  out += 'e';
  out += exp < 0 ? '-' : '+';
  const int a = exp < 0 ? -exp : exp;
  if (a < 10) out += '0';
  out += std::to_string(a);
  return out;
}

// Python's repr() of a str or bytes. For a str, what Python escapes too:
// control and invisible characters (platform/printable.hpp: hidden()) as \xNN,
// \uNNNN or \UNNNNNNNN; a byte that is not part of valid UTF-8 (a name
// from /dev/shm may hold any) as \udcNN, as Python shows the name decoded
// with os.fsdecode() (surrogateescape). So the result never holds a control
// byte and is valid UTF-8, whatever `s` holds.
std::string quote_repr(std::string_view s, bool bytes) {
  const bool use_double = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = use_double ? '"' : '\'';
  std::string out = bytes ? "b" : "";
  out += q;
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = static_cast<unsigned char>(s[i]);
    std::size_t n = 1;
    if (!bytes && cp >= 0x80) {
      n = detail::utf8_at(s, i, cp);
      if (n == 0) {
        detail::append_escape(out, "\\udc%02x", static_cast<unsigned char>(s[i]));
        ++i;
        continue;
      }
    }
    if (cp == '\\' || cp == static_cast<unsigned char>(q)) {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (bytes ? (cp < 0x20 || cp >= 0x7f) : detail::hidden(cp)) {
      detail::append_escape(out,
                            cp < 0x100     ? "\\x%02x"
                            : cp < 0x10000 ? "\\u%04x"
                                           : "\\U%08x",
                            static_cast<unsigned>(cp));
    } else {
      out.append(s.substr(i, n));  // printable ASCII, or a printable character's UTF-8
    }
    i += n;
  }
  out += q;
  return out;
}

// Exact int == float, as Python compares them (never by rounding the int).
bool int_equals_float(std::int64_t i, double d) noexcept {
  if (!std::isfinite(d) || d != std::trunc(d)) return false;
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
  return static_cast<std::int64_t>(d) == i;
}

}  // namespace

bool python_equal(const Item& a, const Item& b) noexcept {
  auto number = [](const Item& v, std::int64_t& i, double& d) -> int {
    if (const auto* x = std::get_if<bool>(&v)) {
      i = *x ? 1 : 0;
      return 1;
    }
    if (const auto* x = std::get_if<std::int64_t>(&v)) {
      i = *x;
      return 1;
    }
    if (const auto* x = std::get_if<double>(&v)) {
      d = *x;
      return 2;
    }
    return 0;
  };
  std::int64_t ia = 0, ib = 0;
  double da = 0, db = 0;
  const int ka = number(a, ia, da);
  const int kb = number(b, ib, db);
  if (ka != 0 || kb != 0) {
    if (ka == 0 || kb == 0) return false;
    if (ka == 1 && kb == 1) return ia == ib;
    if (ka == 2 && kb == 2) return da == db;
    return ka == 1 ? int_equals_float(ia, db) : int_equals_float(ib, da);
  }
  return a == b;  // None, str, bytes: same alternative and same value
}

std::string python_repr(const Item& item) {
  switch (item.index()) {
    case 0:
      return "None";
    case 1:
      return std::get<bool>(item) ? "True" : "False";
    case 2:
      return std::to_string(std::get<std::int64_t>(item));
    case 3:
      return float_repr(std::get<double>(item));
    case 4:
      return quote_repr(std::get<std::string>(item), false);
    default:
      return quote_repr(std::get<Bytes>(item).view(), true);
  }
}

}  // namespace shmkit
