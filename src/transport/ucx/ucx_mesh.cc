#include "transport/ucx/ucx_mesh.h"

#include <string>
#include <vector>

#include "common/log.h"

namespace lshmoe::transport {

Status UcxMesh::create(const BootstrapConfig& bootstrap, std::unique_ptr<UcxMesh>* out) {
  if (bootstrap.world_size < 1 || bootstrap.world_size > kMaxUcxRanks) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ucx: world size %d is outside [1, %d]",
                bootstrap.world_size, kMaxUcxRanks);
  }
  auto mesh = std::make_unique<UcxMesh>();
  mesh->rank_ = bootstrap.rank;
  mesh->world_size_ = bootstrap.world_size;
  UcxWorkerOptions options;
  options.name = "rank " + std::to_string(bootstrap.rank);
  options.timeout_ms = bootstrap.timeout_ms;
  LSHMOE_RETURN_IF_ERROR(UcxWorker::create(options, &mesh->worker_));

  std::vector<uint8_t> address;
  LSHMOE_RETURN_IF_ERROR(mesh->worker_->address(&address));
  std::vector<std::vector<uint8_t>> addresses;
  LSHMOE_RETURN_IF_ERROR(
      bootstrap_allgather(bootstrap, address.data(), address.size(), &addresses));
  for (int p = 0; p < bootstrap.world_size; ++p) {
    const std::string label = "rank " + std::to_string(p);
    if (p == bootstrap.rank) {
      mesh->worker_->reserve_endpoint(label);
      continue;
    }
    int id = -1;
    LSHMOE_RETURN_IF_ERROR(mesh->worker_->connect_address(addresses[size_t(p)], label, &id));
  }
  LSHMOE_INFO("ucx: rank %d of %d ready, worker address %zu bytes", bootstrap.rank,
              bootstrap.world_size, address.size());
  *out = std::move(mesh);
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::transport
