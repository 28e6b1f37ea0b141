// Package deps pins the project's chosen dependencies in go.mod while the
// packages that use them are being written. It is removed once each is imported.
package deps

import (
	_ "github.com/caddyserver/certmagic"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/uuid"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/mdlayher/arp"
	_ "github.com/mdlayher/ndp"
	_ "github.com/pires/go-proxyproto"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/smallstep/certificates/authority"
	_ "github.com/smallstep/certificates/ca"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/time/rate"
	_ "golang.zx2c4.com/wireguard/device"
	_ "golang.zx2c4.com/wireguard/wgctrl"
	_ "gopkg.in/yaml.v3"
)
