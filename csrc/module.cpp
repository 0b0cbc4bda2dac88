#include <pybind11/pybind11.h>

#include "op_schemas.h"

TORCH_LIBRARY(recbole_hnlm, m) { define_op_schemas(m); }

// `import recbole_hnlm._C` loads this shared object, which runs the registrations above; the Python
// module itself exposes nothing.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {}
