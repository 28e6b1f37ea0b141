package agent

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestLifecycleConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  LifecycleConfig
		want string // "" = valid
	}{
		{"zero is valid (off)", LifecycleConfig{}, ""},
		{"full", LifecycleConfig{Listen: "127.0.0.1:7443", BootstrapListen: "127.0.0.1:7444", HeartbeatInterval: time.Second,
			StaleAfter: 5 * time.Second, VIPs: []string{"10.9.0.1/32"}, WireGuardEndpoint: "192.0.2.1:51820",
			WireGuardAllowedIPs: []string{"10.9.0.0/24"}, PlatformURL: "https://platform.example",
			Endpoints: []LifecycleEndpoint{{URL: "https://192.0.2.1:8443", Scope: "wan", Priority: 1}}}, ""},
		{"stale below interval", LifecycleConfig{HeartbeatInterval: time.Minute, StaleAfter: 30 * time.Second}, "lifecycle.stale_after"},
		{"tiny duration", LifecycleConfig{NoticeTimeout: time.Millisecond}, "lifecycle.notice_timeout"},
		{"bad listen", LifecycleConfig{Listen: "nope"}, "lifecycle.listen"},
		{"bad vip", LifecycleConfig{VIPs: []string{"10.0.0.0/24"}}, "lifecycle.vips"},
		{"bad wg endpoint", LifecycleConfig{WireGuardEndpoint: "host"}, "lifecycle.wireguard_endpoint"},
		{"bad platform url", LifecycleConfig{PlatformURL: "ftp://x"}, "lifecycle.platform_url"},
		{"bad endpoint", LifecycleConfig{Endpoints: []LifecycleEndpoint{{URL: "nope"}}}, "lifecycle.endpoints[0]"},
		{"negative", LifecycleConfig{HeartbeatBurst: -1}, "lifecycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestLifecycleDefaults(t *testing.T) {
	d := LifecycleConfig{}.withDefaults()
	if d.HeartbeatInterval != time.Minute || d.StaleAfter != 5*time.Minute || d.InviteTTL != 24*time.Hour ||
		d.SuspendPolicy.Threshold != 3 || d.SuspendPolicy.Window != 24*time.Hour {
		t.Fatalf("defaults %+v", d)
	}
	if err := d.suspendPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestLimiterSetPerKey: one key's flood does not starve another.
func TestLimiterSetPerKey(t *testing.T) {
	l := limiterSet{r: rate.Limit(0.001), burst: 3, m: map[string]*rate.Limiter{}}
	n := 0
	for i := 0; i < 10; i++ {
		if l.allow("hb/a") {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("allowed %d of a flood, want the burst of 3", n)
	}
	if !l.allow("hb/b") {
		t.Fatal("another peer was limited by the first one's flood")
	}
}
