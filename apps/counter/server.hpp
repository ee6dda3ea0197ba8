// `coraft-counter serve`: one server of the replicated counter.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace counter {

struct ServeOptions {
  std::uint64_t id = 0;
  std::uint64_t cluster_id = 1;
  std::string data_dir;
  std::string peer_listen = "127.0.0.1:0";
  std::string client_listen = "127.0.0.1:0";
  std::string peer_advertise;             // where peers reach this server, when not --peer-listen
  std::vector<std::string> peers;         // "ID=HOST:PORT": where each peer listens for peers
  std::vector<std::string> peer_clients;  // "ID=HOST:PORT": where each peer serves clients
  bool bootstrap = false;                 // initialise an empty data directory first
  std::string tls_ca, tls_cert, tls_key, tls_cluster_name;
  std::string metrics_listen;  // empty: no metrics endpoint
  std::uint32_t tick_ms = 50;
  std::uint32_t election_ticks = 10;
  std::uint32_t heartbeat_ticks = 2;
  std::uint64_t snapshot_threshold_entries = 100'000;
  std::uint32_t client_connections_max = 1024;
  std::uint64_t pending_proposals_max = 1u << 16;
  std::uint32_t sessions_max = 1024;
  std::uint64_t session_timeout_ms = 60 * 60 * 1000;
  std::string log_level = "info";
};

// Runs a server until SIGTERM or SIGINT. Returns the process's exit status: 0 after a graceful
// stop, 1 when the server could not start or failed (with a one-line message on stderr), 2 for
// options that can never work.
int run_serve(const ServeOptions& options);

// "host:port" split; fails on anything else.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
[[nodiscard]] bool parse_host_port(const std::string& text, HostPort& out);
// "ID=host:port" split.
[[nodiscard]] bool parse_id_address(const std::string& text, std::uint64_t& id,
                                    std::string& address);

}  // namespace counter
