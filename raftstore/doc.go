// Package raftstore replicates one site's federation state with
// hashicorp/raft over mutual TLS.
//
// A Store owns a raft node (raft-boltdb log and stable store, file
// snapshots, all under Config.DataDir) and a TLS listener that carries two
// protocols chosen by ALPN: raft replication ("fedgate-raft/1") and a small
// RPC ("fedgate-rpc/1") that forwards writes and membership changes from
// followers to the leader. Every connection must present a certificate from
// the site CA.
//
// Writes are versioned, idempotent Command envelopes. The raft FSM is thin:
// it decodes a command and hands it to State, plain deterministic code with
// no raft import. State is immutable: each applied command produces a new
// State that shares unchanged maps with the old one, so readers
// (Store.State) never block the FSM and never observe half a command.
//
// See DESIGN.md for the invariants and the reasons behind them.
package raftstore
