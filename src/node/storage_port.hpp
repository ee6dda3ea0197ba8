// The production durable stream over storage/, and the data directory's layout.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/io_context.hpp>

#include <coraft/entry.hpp>
#include <coraft/result.hpp>

#include "node/ports.hpp"
#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage/snapshot_store.hpp"

namespace coraft::node {

// DATA DIRECTORY LAYOUT: `identity` (the text "cluster_id N"), log/ (segments and the
// hard-state file), snapshots/ (the snapshot store).
inline constexpr const char* identity_file = "identity";
[[nodiscard]] std::string log_dir(const std::string& data_dir);
[[nodiscard]] Result<std::optional<std::uint64_t>> read_cluster_id(const std::string& data_dir);
[[nodiscard]] Result<void> write_cluster_id(const std::string& data_dir, std::uint64_t cluster_id);

[[nodiscard]] std::unique_ptr<DurablePort> make_storage_durable(
    std::unique_ptr<storage::SegmentedLog> log, storage::HardStateFile hs);

// Offline helpers: run one write to completion on a private io_context.
[[nodiscard]] Result<void> run_blocking_append(asio::io_context& io, storage::SegmentedLog& log,
                                               std::vector<Entry> entries);
[[nodiscard]] Result<void> run_blocking_save(asio::io_context& io, storage::HardStateFile& hs,
                                             storage::HardState state);

}  // namespace coraft::node
