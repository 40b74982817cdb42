// python/src/queues/codec.cpp — how every object of shmkit._queues turns
// Python items into item bytes and back (CodecHead, queues.hpp).
// Contract: module.cpp.
#include <cmath>
#include <cstring>
#include <string_view>

#include "queues/queues.hpp"

namespace shmkit::python::queues {
// The bytes of one mode-'s' item of typecode `c` (0: not a scalar typecode).
Py_ssize_t scalar_size(char c) {
  switch (c) {
    case 'b':
    case 'B':
    case '?':
    case 'c':
      return 1;
    case 'h':
    case 'H':
      return 2;
    case 'i':
    case 'I':
    case 'f':
      return 4;
    case 'q':
    case 'Q':
    case 'd':
      return 8;
    default:
      return 0;
  }
}

// Packs `obj` into one item at `dst` (item bytes). 0 or -1 with an exception.
int pack_item(CodecHead* self, PyObject* obj, unsigned char* dst) {
  switch (self->mode) {
    case 's': {
      switch (self->code) {
        case 'd':
        case 'f': {
          const double v = PyFloat_AsDouble(obj);
          if (v == -1.0 && PyErr_Occurred()) return -1;
          if (self->code == 'd')
            std::memcpy(dst, &v, 8);
          else {
            const float f = static_cast<float>(v);
            std::memcpy(dst, &f, 4);
          }
          return 0;
        }
        case '?': {
          const int t = PyObject_IsTrue(obj);
          if (t < 0) return -1;
          dst[0] = static_cast<unsigned char>(t);
          return 0;
        }
        case 'c': {
          if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != 1) {
            PyErr_SetString(PyExc_TypeError, "a 'c' queue takes bytes of length 1");
            return -1;
          }
          dst[0] = static_cast<unsigned char>(PyBytes_AS_STRING(obj)[0]);
          return 0;
        }
        case 'Q':
        case 'I':
        case 'H':
        case 'B': {
          if (!PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(obj)->tp_name);
            return -1;
          }
          const unsigned long long v = PyLong_AsUnsignedLongLong(obj);
          if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
          if (self->item < 8 && v >> (8 * self->item) != 0) {
            PyErr_SetString(PyExc_OverflowError, "value out of range for the queue's item type");
            return -1;
          }
          std::memcpy(dst, &v, static_cast<std::size_t>(self->item));  // little-endian
          return 0;
        }
        default: {  // q i h b
          if (!PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(obj)->tp_name);
            return -1;
          }
          const long long v = PyLong_AsLongLong(obj);
          if (v == -1 && PyErr_Occurred()) return -1;
          if (self->item < 8) {
            const long long lim = 1LL << (8 * self->item - 1);
            if (v < -lim || v >= lim) {
              PyErr_SetString(PyExc_OverflowError, "value out of range for the queue's item type");
              return -1;
            }
          }
          std::memcpy(dst, &v, static_cast<std::size_t>(self->item));  // little-endian
          return 0;
        }
      }
    }
    case 'y': {
      Py_buffer b;
      if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
      if (b.len > self->maxbytes) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes is longer than the queue's maxbytes (%zd)", b.len,
                     self->maxbytes);
        PyBuffer_Release(&b);
        return -1;
      }
      const std::uint32_t n = static_cast<std::uint32_t>(b.len);
      std::memcpy(dst, &n, 4);
      std::memcpy(dst + 4, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
    case 't': {
      PyObject* packed;
      if (PyTuple_Check(obj)) {
        PyObject* pack = PyObject_GetAttrString(self->st, "pack");
        if (pack == nullptr) return -1;
        packed = PyObject_Call(pack, obj, nullptr);
        Py_DECREF(pack);
      } else {
        packed = Py_NewRef(obj);  // bytes-like of the item's size
      }
      if (packed == nullptr) return -1;
      Py_buffer b;
      const int r = PyObject_GetBuffer(packed, &b, PyBUF_SIMPLE);
      Py_DECREF(packed);
      if (r < 0) return -1;
      if (b.len != self->item) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes, the queue's items have %zd", b.len, self->item);
        PyBuffer_Release(&b);
        return -1;
      }
      std::memcpy(dst, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
    default: {  // 'r'
      Py_buffer b;
      if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
      if (b.len != self->item) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes, the queue's items have %zd", b.len, self->item);
        PyBuffer_Release(&b);
        return -1;
      }
      std::memcpy(dst, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
  }
}

PyObject* unpack_item(CodecHead* self, const unsigned char* src) {
  switch (self->mode) {
    case 's':
      switch (self->code) {
        case 'd': {
          double v;
          std::memcpy(&v, src, 8);
          return PyFloat_FromDouble(v);
        }
        case 'f': {
          float v;
          std::memcpy(&v, src, 4);
          return PyFloat_FromDouble(v);
        }
        case '?':
          return PyBool_FromLong(src[0] != 0);
        case 'c':
          return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), 1);
        case 'q': {
          long long v;
          std::memcpy(&v, src, 8);
          return PyLong_FromLongLong(v);
        }
        case 'Q': {
          unsigned long long v;
          std::memcpy(&v, src, 8);
          return PyLong_FromUnsignedLongLong(v);
        }
        case 'i': {
          std::int32_t v;
          std::memcpy(&v, src, 4);
          return PyLong_FromLong(v);
        }
        case 'I': {
          std::uint32_t v;
          std::memcpy(&v, src, 4);
          return PyLong_FromUnsignedLong(v);
        }
        case 'h': {
          std::int16_t v;
          std::memcpy(&v, src, 2);
          return PyLong_FromLong(v);
        }
        case 'H': {
          std::uint16_t v;
          std::memcpy(&v, src, 2);
          return PyLong_FromLong(v);
        }
        case 'b':
          return PyLong_FromLong(static_cast<signed char>(src[0]));
        default:
          return PyLong_FromLong(src[0]);
      }
    case 'y': {
      std::uint32_t n;
      std::memcpy(&n, src, 4);
      // The length comes from shared memory: never read past the item.
      if (n > static_cast<std::uint64_t>(self->item - 4)) {
        PyErr_Format(PyExc_ValueError, "corrupt item: length %u > the slot's %zd bytes", n, self->item - 4);
        return nullptr;
      }
      return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src + 4), n);
    }
    case 't': {
      // A copy, not a memoryview of `src`: the caller's struct object is
      // Python code that could keep what it is given, and `src` is often a
      // stack buffer.
      PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), self->item);
      if (b == nullptr) return nullptr;
      PyObject* r = PyObject_CallMethod(self->st, "unpack", "O", b);
      Py_DECREF(b);
      return r;
    }
    default:
      return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), self->item);
  }
}

// Fills the codec and the fingerprint from the Python description of an
// item; -1 with an exception.
int init_codec(CodecHead* c, Py_ssize_t item, Py_ssize_t align, const char* typecode, const char* type_name,
               const char* mode, Py_ssize_t maxbytes, PyObject* st, shmkit::TypeFingerprint* f) {
  if (item <= 0 || align <= 0 || align > 8 || (align & (align - 1)) != 0 || item % align != 0) {
    PyErr_Format(PyExc_ValueError,
                 "item of %zd bytes aligned to %zd: the alignment must be a power of two <= 8 "
                 "dividing the size",
                 item, align);
    return -1;
  }
  if (std::strlen(mode) != 1 || std::strchr("styr", mode[0]) == nullptr) {
    PyErr_SetString(PyExc_ValueError, "mode must be one of s t y r");
    return -1;
  }
  if (mode[0] == 't' && (st == nullptr || st == Py_None)) {
    PyErr_SetString(PyExc_ValueError, "mode 't' needs a struct.Struct");
    return -1;
  }
  if (mode[0] == 'y' && (maxbytes < 0 || item < 4 || maxbytes > item - 4)) {
    PyErr_SetString(PyExc_ValueError, "bytes items: maxbytes + 4 must fit the item");
    return -1;
  }
  if (mode[0] == 's' && (typecode == nullptr || scalar_size(typecode[0]) == 0)) {
    PyErr_SetString(PyExc_ValueError, "mode 's' needs a typecode among b B h H i I q Q f d ? c");
    return -1;
  }
  // pack_item writes the typecode's size: the item must be exactly that.
  if (mode[0] == 's' && scalar_size(typecode[0]) != item) {
    PyErr_Format(PyExc_ValueError, "typecode '%c' is %zd bytes, not the item size %zd", typecode[0],
                 scalar_size(typecode[0]), item);
    return -1;
  }
  f->typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f->size = static_cast<std::uint32_t>(item);
  f->align = static_cast<std::uint32_t>(align);
  if (f->typecode == 0 && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a struct item needs a type name");
    return -1;
  }
  f->name_hash =
      f->typecode != 0 ? shmkit::fnv1a(std::string_view(&f->typecode, 1)) : shmkit::fnv1a(type_name);
  c->mode = mode[0];
  c->code = typecode != nullptr ? typecode[0] : 0;
  c->item = item;
  c->maxbytes = maxbytes;
  c->st = (st != nullptr && st != Py_None) ? Py_NewRef(st) : nullptr;
  return 0;
}

const WordOps* init_word_codec(CodecHead* c, Py_ssize_t item, Py_ssize_t align, const char* typecode,
                               const char* type_name, const char* mode, Py_ssize_t maxbytes, PyObject* st,
                               shmkit::TypeFingerprint* f) {
  if (init_codec(c, item, align, typecode, type_name, mode, maxbytes, st, f) < 0) return nullptr;
  const WordOps* ops = find_word_ops(item);
  if (ops == nullptr) {
    PyErr_Format(PyExc_ValueError,
                 "SeqLock/BroadcastRing items hold up to 256 bytes, or 384, 512, 1024, 2048 "
                 "or 4096; not %zd",
                 item);
  }
  return ops;
}

}  // namespace shmkit::python::queues
