#include "eval/npy.h"

#include <cstdio>
#include <cstring>
#include <memory>

namespace lshmoe::eval {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

// The value of 'key' in a NumPy header dict, e.g. 'descr': '<f4'.
bool header_field(const std::string& header, const char* key, std::string* value) {
  const std::string quoted = std::string("'") + key + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string::npos) return false;
  pos = header.find(':', pos);
  if (pos == std::string::npos) return false;
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos >= header.size()) return false;
  size_t end;
  if (header[pos] == '\'') {
    end = header.find('\'', pos + 1);
    if (end == std::string::npos) return false;
    *value = header.substr(pos + 1, end - pos - 1);
  } else if (header[pos] == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) return false;
    *value = header.substr(pos + 1, end - pos - 1);
  } else {
    end = header.find_first_of(",}", pos);
    if (end == std::string::npos) return false;
    *value = header.substr(pos, end - pos);
  }
  return true;
}

}  // namespace

size_t Array::elems() const {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

Status read_npy(const std::string& path, Array* out) {
  File f(fopen(path.c_str(), "rb"));
  if (!f) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: cannot open", path.c_str());
  char magic[8];
  if (fread(magic, 1, 8, f.get()) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: not a .npy file", path.c_str());
  }
  const int major = magic[6];
  size_t header_len = 0;
  if (major == 1) {
    uint8_t b[2];
    if (fread(b, 1, 2, f.get()) != 2)
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: truncated", path.c_str());
    header_len = b[0] | (size_t(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    uint8_t b[4];
    if (fread(b, 1, 4, f.get()) != 4)
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: truncated", path.c_str());
    header_len = b[0] | (size_t(b[1]) << 8) | (size_t(b[2]) << 16) | (size_t(b[3]) << 24);
  } else {
    return fail(LSHMOE_ERR_UNSUPPORTED, "%s: .npy version %d", path.c_str(), major);
  }
  std::string header(header_len, '\0');
  if (fread(header.data(), 1, header_len, f.get()) != header_len) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: truncated header", path.c_str());
  }
  std::string descr, order, shape;
  if (!header_field(header, "descr", &descr) || !header_field(header, "fortran_order", &order) ||
      !header_field(header, "shape", &shape)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: malformed header", path.c_str());
  }
  Array a;
  if (descr == "<f4") {
    a.dtype = DType::kFloat32;
  } else if (descr == "<f2") {
    a.dtype = DType::kFloat16;
  } else if (descr == "<u2" || descr == "<V2" || descr == "bfloat16") {
    a.dtype = DType::kBFloat16;
  } else {
    return fail(LSHMOE_ERR_UNSUPPORTED, "%s: dtype %s (expected <f4, <f2, or <u2 for bf16)",
                path.c_str(), descr.c_str());
  }
  if (order.find("False") == std::string::npos) {
    return fail(LSHMOE_ERR_UNSUPPORTED, "%s: Fortran order", path.c_str());
  }
  size_t pos = 0;
  while (pos < shape.size()) {
    while (pos < shape.size() && (shape[pos] == ' ' || shape[pos] == ',')) ++pos;
    if (pos >= shape.size()) break;
    char* end = nullptr;
    a.shape.push_back(strtoull(shape.c_str() + pos, &end, 10));
    pos = end - shape.c_str();
  }
  size_t bytes = dtype_size(a.dtype);
  for (size_t d : a.shape) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: shape %s is too large", path.c_str(),
                  shape.c_str());
    }
  }
  a.data.resize(bytes);
  if (fread(a.data.data(), 1, bytes, f.get()) != bytes) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: %zu data bytes expected", path.c_str(), bytes);
  }
  *out = std::move(a);
  return LSHMOE_SUCCESS;
}

Status write_npy(const std::string& path, const Array& array) {
  std::string shape = "(";
  for (size_t d : array.shape) shape += std::to_string(d) + ", ";
  if (array.shape.size() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  const char* descr = array.dtype == DType::kFloat32   ? "<f4"
                      : array.dtype == DType::kFloat16 ? "<f2"
                                                       : "<u2";
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  File f(fopen(path.c_str(), "wb"));
  if (!f) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: cannot create", path.c_str());
  const uint8_t len[2] = {uint8_t(header.size() & 0xff), uint8_t(header.size() >> 8)};
  const bool ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f.get()) == 8 &&
                  fwrite(len, 1, 2, f.get()) == 2 &&
                  fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
                  fwrite(array.data.data(), 1, array.data.size(), f.get()) == array.data.size();
  if (!ok) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: write failed", path.c_str());
  return LSHMOE_SUCCESS;
}

std::vector<float> to_float(const Array& array) {
  std::vector<float> out(array.elems());
  for (size_t i = 0; i < out.size(); ++i) out[i] = array.at(i);
  return out;
}

Array from_float(const std::vector<float>& values, std::vector<size_t> shape, DType dtype) {
  Array a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.data.resize(values.size() * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) store_elem(dtype, a.data.data(), i, values[i]);
  return a;
}

}  // namespace lshmoe::eval
