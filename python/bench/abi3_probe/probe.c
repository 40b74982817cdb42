/* abi3_probe: the same few extension functions built twice, with the full
 * C API and with the stable ABI (Py_LIMITED_API), to measure what abi3 costs
 * per call (python/bench/abi3_probe/bench.py builds and times both). Not
 * part of the package. Each function is METH_FASTCALL, as shmkit's are. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* noop(): the bare cost of a call. */
static PyObject* noop(PyObject* m, PyObject* const* args, Py_ssize_t n) {
  (void)m; (void)args; (void)n;
  Py_RETURN_NONE;
}

/* add1(i): an int in, an int out (what Value.fetch_add-like calls do). */
static PyObject* add1(PyObject* m, PyObject* const* args, Py_ssize_t n) {
  (void)m;
  if (n != 1) { PyErr_SetString(PyExc_TypeError, "add1(i)"); return NULL; }
  long v = PyLong_AsLong(args[0]);
  if (v == -1 && PyErr_Occurred()) return NULL;
  return PyLong_FromLong(v + 1);
}

/* fsum(t): a tuple of floats summed (item access: macros in the full API,
 * function calls in the limited one). */
static PyObject* fsum(PyObject* m, PyObject* const* args, Py_ssize_t n) {
  (void)m;
  if (n != 1 || !PyTuple_Check(args[0])) { PyErr_SetString(PyExc_TypeError, "fsum(tuple)"); return NULL; }
  double s = 0;
#ifdef Py_LIMITED_API
  Py_ssize_t len = PyTuple_Size(args[0]);
  for (Py_ssize_t i = 0; i < len; ++i) s += PyFloat_AsDouble(PyTuple_GetItem(args[0], i));
#else
  Py_ssize_t len = PyTuple_GET_SIZE(args[0]);
  for (Py_ssize_t i = 0; i < len; ++i) s += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(args[0], i));
#endif
  if (PyErr_Occurred()) return NULL;
  return PyFloat_FromDouble(s);
}

static PyMethodDef methods[] = {
    {"noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL, "Does nothing."},
    {"add1", (PyCFunction)(void (*)(void))add1, METH_FASTCALL, "i + 1."},
    {"fsum", (PyCFunction)(void (*)(void))fsum, METH_FASTCALL, "Sum of a tuple of floats."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, PROBE_NAME, NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
PyMODINIT_FUNC CAT(PyInit_, PROBE_MODULE)(void) { return PyModule_Create(&module); }
