// Package pkitest holds test helpers for code that uses pki: a real site CA
// in a temporary directory, test loggers, and a stateful FaultyIssuer that
// wraps a real Issuer and corrupts or drops its answers on demand.
package pkitest
