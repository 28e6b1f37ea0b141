package agent

// LifecycleConfig configures the federation lifecycle (accept, handshake,
// heartbeat, revoke, compromise, findings, platform events).
type LifecycleConfig struct{}

func (l *LifecycleConfig) validate() error { return nil }
