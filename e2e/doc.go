// Package e2e holds cross-process tests: real fedgated and fedgate binaries,
// built once per test run, talking over loopback (and, for privileged tests,
// across network namespaces). Every process a test starts is killed and
// every directory removed when the test ends, pass or fail.
package e2e
