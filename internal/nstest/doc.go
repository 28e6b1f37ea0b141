// Package nstest holds network-namespace helpers for privileged tests.
//
// Every helper registers its own cleanup with t.Cleanup, so a failing test
// still removes the namespaces, links and processes it created. A test that
// is not run as root is skipped with a message naming the capability.
//
// Typical use (tests named TestPrivileged*, see STYLE.md):
//
//	func TestPrivilegedThing(t *testing.T) {
//		a := nstest.New(t, "a")            // skips unless root
//		b := nstest.New(t, "b")
//		nstest.Veth(t, a, "wire0", b, "wire1")
//		a.MustDo(t, func() error { ... runs with the OS thread locked inside a ... })
//		h := a.Handle(t)                  // *netlink.Handle bound to a
//		a.Start(t, exec.Command(bin, "--config", cfg), 5*time.Second) // process in a, killed on cleanup
//	}
//
// Sockets opened inside Do stay in that namespace after Do returns, so a
// listener or dialer created in Do may be used from any goroutine later.
// Namespace names get a random suffix, so parallel tests and other
// engineers' tests on the same host never collide.
package nstest
