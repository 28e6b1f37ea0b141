// Package proxytest holds stateful fakes and helpers for testing the proxy
// package and its users: an in-memory State, a recording Auditor that can be
// made to fail, a per-peer-bundle Verifier, static Certificates, and helpers
// that issue federation certificates from a real pki site CA.
package proxytest
