package raftstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"

	"github.com/powernode/fedgate/federation"
)

// snapshotFormat is the version of the JSON document MarshalJSON writes.
const snapshotFormat = 1

type revocationEntry struct {
	Key string `json:"key"`
	Revocation
}

type appliedEntry struct {
	Seq    uint64 `json:"seq"`
	Result Result `json:"result"`
}

// stateDoc is the JSON form of State: every collection as a sorted list, so
// equal states encode to equal bytes.
type stateDoc struct {
	Format      int                  `json:"format"`
	Peers       []federation.Peer    `json:"peers"`
	Grants      []federation.Grant   `json:"grants"`
	Contracts   federation.Registry  `json:"contracts"`
	Revocations []revocationEntry    `json:"revocations"`
	VIPs        []VIP                `json:"vips"`
	VIPHistory  []VIPAssignment      `json:"vip_history"`
	WGKeys      []WGKey              `json:"wireguard_keys"`
	WGPeers     []WGPeer             `json:"wireguard_peers"`
	KV          []KVEntry            `json:"kv"`
	Locks       []Lock               `json:"locks"`
	Members     []Member             `json:"members"`
	Findings    []federation.Finding `json:"findings"`
	DedupWindow int                  `json:"dedup_window"`
	AppliedSeq  uint64               `json:"applied_seq"`
	LastAt      time.Time            `json:"last_at"`
	Applied     []appliedEntry       `json:"applied"`
}

// MarshalJSON encodes the whole state, including the idempotency window,
// deterministically.
func (s *State) MarshalJSON() ([]byte, error) {
	d := stateDoc{
		Format:      snapshotFormat,
		Peers:       s.Peers(),
		Grants:      s.Grants(""),
		Contracts:   s.contracts,
		Revocations: []revocationEntry{},
		VIPs:        s.VIPs(),
		VIPHistory:  nonNil(s.vipHistory),
		WGKeys:      s.WGKeys(),
		WGPeers:     s.WGPeers(),
		KV:          s.KVList(""),
		Locks:       s.Locks(),
		Members:     s.Members(),
		Findings:    []federation.Finding{},
		DedupWindow: s.dedupWindow,
		AppliedSeq:  s.appliedSeq,
		LastAt:      s.lastAt,
		Applied:     []appliedEntry{},
	}
	for _, k := range sortedKeys(s.revocations) {
		d.Revocations = append(d.Revocations, revocationEntry{Key: k, Revocation: s.revocations[k]})
	}
	for _, k := range sortedKeys(s.findings) {
		d.Findings = append(d.Findings, s.findings[k])
	}
	s.appliedOrder.Root().Walk(func(k []byte, v any) bool {
		r, _ := s.applied.Get([]byte(v.(string)))
		d.Applied = append(d.Applied, appliedEntry{Seq: binary.BigEndian.Uint64(k), Result: r.(Result)})
		return false
	})
	return json.Marshal(d)
}

// DecodeState rebuilds a State from MarshalJSON output (a snapshot). It
// refuses unknown fields, an unknown format and inconsistent content, so a
// damaged snapshot is an error rather than a silently different state.
// dedupWindow > 0 overrides the window recorded in the document.
func DecodeState(data []byte, dedupWindow int) (*State, error) {
	var d stateDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if d.Format != snapshotFormat {
		return nil, fmt.Errorf("decode state: format %d is not %d", d.Format, snapshotFormat)
	}
	if err := d.Contracts.Validate(); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	w := dedupWindow
	if w <= 0 {
		w = d.DedupWindow
	}
	s := NewState(w)
	s.contracts = d.Contracts
	for _, p := range d.Peers {
		s.peers[p.ID] = p
	}
	for _, g := range d.Grants {
		s.grants[g.ID] = g
	}
	for _, r := range d.Revocations {
		s.revocations[r.Key] = r.Revocation
	}
	for _, v := range d.VIPs {
		s.vips[v.Name] = v
	}
	s.vipHistory = d.VIPHistory
	for _, k := range d.WGKeys {
		s.wgKeys[k.NodeID] = k
	}
	for _, p := range d.WGPeers {
		s.wgPeers[p.Name] = p
	}
	txn := iradix.New().Txn()
	for _, e := range d.KV {
		txn.Insert([]byte(e.Key), e)
	}
	s.kv = txn.Commit()
	for _, l := range d.Locks {
		s.locks[l.Name] = l
	}
	for _, m := range d.Members {
		s.members[m.NodeID] = m
	}
	for _, f := range d.Findings {
		s.findings[f.ID] = f
	}
	applied, order := iradix.New().Txn(), iradix.New().Txn()
	for _, a := range d.Applied {
		var seq [8]byte
		binary.BigEndian.PutUint64(seq[:], a.Seq)
		applied.Insert([]byte(a.Result.ID), a.Result)
		order.Insert(seq[:], a.Result.ID)
	}
	s.applied, s.appliedOrder, s.appliedSeq, s.lastAt = applied.Commit(), order.Commit(), d.AppliedSeq, d.LastAt
	for s.appliedOrder.Len() > s.dedupWindow {
		k, v, _ := s.appliedOrder.Root().Minimum()
		s.appliedOrder, _, _ = s.appliedOrder.Delete(k)
		s.applied, _, _ = s.applied.Delete([]byte(v.(string)))
	}
	if len(s.peers) != len(d.Peers) || len(s.grants) != len(d.Grants) || s.kv.Len() != len(d.KV) ||
		s.applied.Len() != s.appliedOrder.Len() {
		return nil, fmt.Errorf("decode state: duplicate keys in document")
	}
	return s, nil
}
