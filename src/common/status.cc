#include "common/status.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace lshmoe {
namespace {
thread_local char g_last_error[512] = "";
}

Status fail(Status status, const char* fmt, ...) {
  // Formatted apart first: callers may pass last_error() as an argument.
  char message[sizeof(g_last_error)];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof(message), fmt, args);
  va_end(args);
  memcpy(g_last_error, message, sizeof(message));
  return status;
}

void clear_error() {
  g_last_error[0] = '\0';
}

const char* last_error() {
  return g_last_error;
}

const char* status_string(Status status) {
  switch (status) {
    case LSHMOE_SUCCESS:
      return "success";
    case LSHMOE_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case LSHMOE_ERR_INVALID_CONFIG:
      return "invalid configuration value";
    case LSHMOE_ERR_OUT_OF_MEMORY:
      return "out of memory";
    case LSHMOE_ERR_UNSUPPORTED:
      return "unsupported";
    case LSHMOE_ERR_BUFFER_TOO_SMALL:
      return "buffer too small";
    case LSHMOE_ERR_TIMEOUT:
      return "timed out waiting for a peer";
    case LSHMOE_ERR_NETWORK:
      return "network error";
    case LSHMOE_ERR_CONTEXT_MISMATCH:
      return "context does not match the message";
    case LSHMOE_ERR_WIRE_TRUNCATED:
      return "wire message truncated";
    case LSHMOE_ERR_WIRE_BAD_MAGIC:
      return "wire message has a bad magic";
    case LSHMOE_ERR_WIRE_BAD_VERSION:
      return "wire message has an unsupported version or flags";
    case LSHMOE_ERR_WIRE_BAD_KIND:
      return "wire message has the wrong kind";
    case LSHMOE_ERR_WIRE_BAD_DTYPE:
      return "wire message has the wrong dtype";
    case LSHMOE_ERR_WIRE_SIZE_MISMATCH:
      return "wire message sizes differ from the expected ones";
    case LSHMOE_ERR_WIRE_BAD_SLOTS:
      return "wire message has an invalid slot count";
    case LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE:
      return "wire message has an assignment out of range";
    case LSHMOE_ERR_WIRE_BAD_CHECKSUM:
      return "wire message checksum mismatch";
    case LSHMOE_ERR_WIRE_BAD_SEQUENCE:
      return "wire message sequence number mismatch";
    case LSHMOE_ERR_INTERNAL:
      return "internal error";
    case LSHMOE_STATUS_FORCE_INT:
      break;
  }
  return "unknown status";
}

}  // namespace lshmoe
