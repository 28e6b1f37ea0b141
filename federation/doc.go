// Package federation is the Powernode federation contract as code.
//
// It holds the FederationPeer record and its status state machine, the
// FederationGrant record with its bearer token and the platform's check
// order, contract versions with their SHA-256 digests (v1 embedded byte for
// byte), platform-version compatibility (N-1), the handshake and heartbeat
// messages, findings and the auto-suspend policy, and Authorize, the pure
// decision the proxy takes for every call.
//
// The package is pure: it performs no I/O, reads no clock and holds no global
// mutable state. Time is always passed in as a time.Time and randomness as an
// io.Reader, so every function is deterministic and usable inside a raft FSM.
//
// Values are immutable by convention: functions that change a record
// (Peer.Transition, Peer.ApplyHandshake, Grant.Revoke, Registry.Add, ...)
// return a new value and never mutate their input or share mutable memory
// (slices, maps) with it. IDs are UUIDv7 in canonical lower-case form and are
// never rewritten: nothing in this package changes an existing id, and ParseID
// refuses non-canonical spellings instead of normalising them.
//
// JSON field names are the platform's snake_case names, so records marshalled
// here are what the platform and fedgate's --json output use.
//
// Typical use:
//
//	// raft FSM (plain state code): validate, then apply a transition
//	q, err := peer.Transition(federation.StatusSuspended, reason, cmd.At)
//	reg, err = reg.Add(cv)                      // refuses a digest mismatch
//
//	// proxy, per request, against the local FSM copy
//	key, _ := federation.NewTokenKey(secret)    // once per secret
//	d, err := federation.Authorize(peer, federation.CallRequest{...},
//		federation.AuthState{Contracts: reg, LookupGrant: lookup, Key: key}, now)
//	var ae *federation.AuthError                // errors.As → ae.Status, ae.Reason
//
//	// handshake and heartbeat handlers
//	err = federation.CheckHandshake(federation.Local{PlatformVersion: v, AgreedVersion: peer.ContractVersionAgreed}, hs, reg)
//	peer, err = peer.ApplyHandshake(hs, now)
//	peer, kinds, err := peer.ApplyHeartbeat(hb, now)
package federation
