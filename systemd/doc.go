// Package systemd holds fedgate's unit files (fedgated.service and the
// fedgate-wg@.service template for a userspace WireGuard device) and the
// tests that check them with systemd-analyze: `verify` on copies whose
// ExecStart points at a freshly built fedgated, and the offline security
// exposure score against tailscaled's and step-ca's shipped units (copies in
// compare/). The package has no Go API.
package systemd
