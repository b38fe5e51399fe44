// Steps 4-8 of the codec on the GPU, for every compressed message of a batch:
// writing dispatch and combine messages (slot means summed in fp32 in row
// order and rounded as on the CPU, so equal assignments give equal bytes),
// residuals, and the decoders: every message checked on the device before
// anything is written, then expanded or compensated.
#pragma once

#include <cuda_runtime.h>

#include "codec/cuda/batch.h"
#include "codec/cuda/decode_error.h"
#include "codec/cuda/slot_index.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::cuda {

// Dispatch messages (and residuals [rows][row_elems]) of the compressed
// segments; their rows' energies (row_energy: [rows] scratch) are added to
// energy_totals[0] (|x|^2) and [1] (|x - c|^2).
Status write_dispatch(const Segments& seg, const void* rows, const uint32_t* assignment,
                      const uint32_t* used, const SlotIndex& index, void* wire, void* residual,
                      double2* row_energy, double* energy_totals, cudaStream_t stream);

// Combine messages: the mean of each slot's expert-output rows.
Status write_combine(const Segments& seg, const void* rows, const uint32_t* used,
                     const SlotIndex& index, void* wire, cudaStream_t stream);

// Checks every compressed message (header, sizes, sequence, checksum; for a
// dispatch every index and that every used slot has a row; for a combine
// the used slots against expect_used). valid[m] says whether message m
// passed; the first failure goes to *error_word (decode_error.h). A
// dispatch also fills assignment and used.
Status check_messages(const Segments& seg, lshmoe_kind_t kind, const void* wire,
                      const uint32_t* expect_used, bool require_checksum, uint32_t* assignment,
                      uint32_t* used, uint8_t* referenced, int* valid, uint64_t* error_word,
                      cudaStream_t stream);

// Centroid mode: out (expert layout) gets the used slots of each valid
// message, then zeros up to its slot count.
Status copy_slots(const Segments& seg, const void* wire, const uint32_t* used, const int* valid,
                  void* out, cudaStream_t stream);

// Centroid mode: combine messages from one output per slot (expert layout).
Status write_combine_slots(const Segments& seg, const void* slot_rows, const uint32_t* used,
                           void* wire, cudaStream_t stream);

// out[row] = slot a(row) of `kind` messages, for the rows of valid messages.
Status expand(const Segments& seg, lshmoe_kind_t kind, const void* wire, const uint32_t* assignment,
              const int* valid, void* out, cudaStream_t stream);

// The backward (docs/training.md). Combine-gradient messages (origin): the
// slot means M of the output gradient and, with `residual`, g_i - M_a(i).
Status write_gradient_means(const Segments& seg, const void* grad, const uint32_t* assignment,
                            const uint32_t* used, const SlotIndex& index, void* wire,
                            void* residual, cudaStream_t stream);
// Dispatch-gradient messages (expert): the slot means of the input gradients
// (rows mode), or each slot's gradient over its row count (centroid mode).
Status write_input_gradient_means(const Segments& seg, const void* grad, const uint32_t* used,
                                  const SlotIndex& index, void* wire, cudaStream_t stream);
Status write_scaled_slots(const Segments& seg, const void* slot_rows, const uint32_t* used,
                          const SlotIndex& index, void* wire, cudaStream_t stream);
// Centroid mode (expert): out gets each slot of the valid combine-gradient
// messages times its row count, then zeros.
Status read_scaled_slots(const Segments& seg, const void* wire, const uint32_t* used,
                         const int* valid, const SlotIndex& index, void* out, cudaStream_t stream);

// Zeroes the header of every message of `wire` whose dispatch was rejected
// (valid[m] == 0): what answers a rejected dispatch is rejected in turn.
Status reject_unanswered(const Segments& seg, const int* valid, void* wire, cudaStream_t stream);

// out[row] = round(Y[a(row)] + alpha * residual[row]), for valid messages;
// Y the slots of `kind` messages (a combine's, or a regrouped combine's
// dispatch-kind ones with their own assignment).
Status compensate(const Segments& seg, lshmoe_kind_t kind, const void* wire,
                  const uint32_t* assignment, const void* residual, float alpha, const int* valid,
                  void* out, cudaStream_t stream);

}  // namespace lshmoe::cuda
