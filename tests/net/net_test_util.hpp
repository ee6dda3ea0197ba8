// Shared by the net tests: one sample of every peer message, field-wise comparison, a log
// recorder and a bounded io_context runner.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>

#include <coraft/log.hpp>

#include "core/message.hpp"
#include "net/codec.hpp"

namespace coraft::net::test {

// A payload of `n` bytes with a recognisable pattern, in its own (word-aligned) allocation.
inline Bytes pattern_payload(std::size_t n, unsigned seed = 1) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 31 + seed * 7) & 0xff);
  return Bytes::copy_of(v);
}

inline core::AppendRequest append_request(std::size_t entries, std::size_t payload_bytes) {
  core::AppendRequest a{Term(5), Index(100), Term(4), Index(90), {}};
  for (std::size_t i = 0; i < entries; ++i) {
    a.entries.push_back(Entry{Index(101 + i), Term(5), EntryType::normal,
                              pattern_payload(payload_bytes, static_cast<unsigned>(i))});
  }
  return a;
}

// One message of every kind, with every field set to a non-default value where it has one.
inline std::vector<core::MessageBody> sample_messages() {
  std::vector<core::MessageBody> out;
  out.emplace_back(core::VoteRequest{Term(7), Index(41), Term(6), true, true});
  out.emplace_back(core::VoteResponse{Term(7), true, true});
  core::AppendRequest a{Term(8), Index(10), Term(7), Index(9), {}};
  a.entries.push_back(Entry{Index(11), Term(7), EntryType::noop, {}});
  a.entries.push_back(Entry{Index(12), Term(8), EntryType::normal, pattern_payload(300)});
  a.entries.push_back(Entry{Index(13), Term(8), EntryType::normal, pattern_payload(70000, 3)});
  a.entries.push_back(Entry{Index(14), Term(8), EntryType::config,
                            encode_configuration(*Configuration::make({NodeId(1), NodeId(2)}))});
  out.emplace_back(std::move(a));
  out.emplace_back(core::AppendResponse{Term(8), false, Index(3), Index(20), Term(6), Index(15)});
  out.emplace_back(core::HeartbeatRequest{Term(9), Index(33), 12345});
  out.emplace_back(core::HeartbeatResponse{Term(9), 12345});
  auto conf =
      *Configuration::make({NodeId(1), NodeId(2), NodeId(3)}, {NodeId(1), NodeId(4)}, {NodeId(5)});
  out.emplace_back(core::InstallSnapshot{Term(10), SnapshotMeta{Index(500), Term(9), conf}, 4096,
                                         pattern_payload(5000, 9), true, 31, true});
  out.emplace_back(core::InstallSnapshotResponse{Term(10), Index(500), 9096, true, true, 31});
  out.emplace_back(core::TimeoutNow{Term(11)});
  out.emplace_back(core::ReadIndexRequest{Term(12), 777});
  out.emplace_back(core::ReadIndexResponse{Term(12), 777, Index(345), true});
  return out;
}

inline bool same(const core::VoteRequest& a, const core::VoteRequest& b) {
  return a.term == b.term && a.last_log_index == b.last_log_index &&
         a.last_log_term == b.last_log_term && a.pre_vote == b.pre_vote &&
         a.leadership_transfer == b.leadership_transfer;
}
inline bool same(const core::VoteResponse& a, const core::VoteResponse& b) {
  return a.term == b.term && a.granted == b.granted && a.pre_vote == b.pre_vote;
}
inline bool same(const core::AppendRequest& a, const core::AppendRequest& b) {
  if (a.term != b.term || a.prev_log_index != b.prev_log_index ||
      a.prev_log_term != b.prev_log_term || a.leader_commit != b.leader_commit ||
      a.entries.size() != b.entries.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const Entry& x = a.entries[i];
    const Entry& y = b.entries[i];
    if (x.index != y.index || x.term != y.term || x.type != y.type || !(x.payload == y.payload)) {
      return false;
    }
  }
  return true;
}
inline bool same(const core::AppendResponse& a, const core::AppendResponse& b) {
  return a.term == b.term && a.success == b.success && a.match_index == b.match_index &&
         a.last_log_index == b.last_log_index && a.conflict_term == b.conflict_term &&
         a.conflict_index == b.conflict_index;
}
inline bool same(const core::HeartbeatRequest& a, const core::HeartbeatRequest& b) {
  return a.term == b.term && a.leader_commit == b.leader_commit && a.read_context == b.read_context;
}
inline bool same(const core::HeartbeatResponse& a, const core::HeartbeatResponse& b) {
  return a.term == b.term && a.read_context == b.read_context;
}
inline bool same(const core::InstallSnapshot& a, const core::InstallSnapshot& b) {
  return a.term == b.term && a.meta == b.meta && a.offset == b.offset && a.data == b.data &&
         a.done == b.done && a.stream == b.stream && a.sync == b.sync;
}
inline bool same(const core::InstallSnapshotResponse& a, const core::InstallSnapshotResponse& b) {
  return a.term == b.term && a.last_index == b.last_index && a.next_offset == b.next_offset &&
         a.success == b.success && a.done == b.done && a.stream == b.stream;
}
inline bool same(const core::TimeoutNow& a, const core::TimeoutNow& b) {
  return a.term == b.term;
}
inline bool same(const core::ReadIndexRequest& a, const core::ReadIndexRequest& b) {
  return a.term == b.term && a.context == b.context;
}
inline bool same(const core::ReadIndexResponse& a, const core::ReadIndexResponse& b) {
  return a.term == b.term && a.context == b.context && a.read_index == b.read_index &&
         a.success == b.success;
}

inline bool same(const core::MessageBody& a, const core::MessageBody& b) {
  if (a.index() != b.index()) return false;
  return std::visit([&](const auto& x) { return same(x, std::get<std::decay_t<decltype(x)>>(b)); },
                    a);
}

// Records log lines while alive; restores the default sink afterwards.
class LogRecorder {
 public:
  LogRecorder() {
    set_log_sink([this](LogLevel level, std::string_view line) {
      lines_->push_back(std::string(to_string(level)) + ": " + std::string(line));
    });
  }
  ~LogRecorder() { set_log_sink({}); }
  LogRecorder(const LogRecorder&) = delete;
  LogRecorder& operator=(const LogRecorder&) = delete;

  [[nodiscard]] bool contains(std::string_view text) const {
    for (const auto& l : *lines_) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }
  // True when one line holds both `a` and `b`.
  [[nodiscard]] bool contains(std::string_view a, std::string_view b) const {
    for (const auto& l : *lines_) {
      if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
    }
    return false;
  }
  [[nodiscard]] std::size_t size() const { return lines_->size(); }
  // Lines holding `text`.
  [[nodiscard]] std::size_t count(std::string_view text) const {
    std::size_t n = 0;
    for (const auto& l : *lines_) n += l.find(text) != std::string::npos;
    return n;
  }
  [[nodiscard]] std::size_t longest() const {
    std::size_t n = 0;
    for (const auto& l : *lines_) n = std::max(n, l.size());
    return n;
  }
  [[nodiscard]] std::string all() const {
    std::string s;
    for (const auto& l : *lines_) s += l + "\n";
    return s;
  }

 private:
  std::shared_ptr<std::vector<std::string>> lines_ = std::make_shared<std::vector<std::string>>();
};

// Runs `io` until `done()` holds or `limit` passes; returns done().
inline bool run_until(asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

// Runs `io` for `d` (to let something that must not happen have its chance).
inline void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  auto deadline = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
}

// Copies a flattened frame into word-aligned, refcounted memory, as a receive buffer holds it.
inline Bytes aligned_frame(const std::vector<std::byte>& flat) {
  std::shared_ptr<std::uint64_t[]> words(new std::uint64_t[(flat.size() + 7) / 8]);
  std::memcpy(words.get(), flat.data(), flat.size());
  return Bytes::wrap(words, {reinterpret_cast<const std::byte*>(words.get()), flat.size()});
}

}  // namespace coraft::net::test
