package federation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestContractV1Digest(t *testing.T) {
	sum := sha256.Sum256([]byte(contractV1))
	const want = "aebddc1097b29aaee79e22ddd9ebb14b40ea1f27d1dc3e06de937253df65a15f"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("embedded v1 hashes to %s, want %s", got, want)
	}
	if ContractV1Digest != want || Digest(contractV1) != want {
		t.Fatalf("ContractV1Digest = %s", ContractV1Digest)
	}
	// The embedded text is the file in contract/ byte for byte.
	onDisk, err := os.ReadFile(filepath.Join("contract", "v1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != contractV1 {
		t.Fatal("embedded text differs from contract/v1.txt")
	}
	b := BuiltinContracts()
	if len(b) != 1 || b[0].Version != 1 || b[0].Validate() != nil || !strings.HasPrefix(b[0].ContractText, "Effective: 2026-05-14 Version: 1") {
		t.Fatalf("builtin contracts: %+v", b[0].Version)
	}
	if got := DefaultRegistry().SupportedVersions(); !cmp.Equal(got, []int{1}) {
		t.Fatalf("supported versions %v", got)
	}
}

func cv(v int, text string) ContractVersion {
	return ContractVersion{Version: v, ContractText: text, ContractDigest: Digest(text), EffectiveAt: t0}
}

func TestRegistry(t *testing.T) {
	r := DefaultRegistry()
	v2 := cv(2, "contract two\n")
	for _, tc := range []struct {
		name string
		c    ContractVersion
		want error
	}{
		{"version zero", cv(0, "x"), ErrContractVersion},
		{"version negative", cv(-1, "x"), ErrContractVersion},
		{"digest mismatch", ContractVersion{Version: 2, ContractText: "a", ContractDigest: Digest("b"), EffectiveAt: t0}, ErrDigestMismatch},
		{"digest upper case", ContractVersion{Version: 2, ContractText: "a", ContractDigest: strings.ToUpper(Digest("a")), EffectiveAt: t0}, ErrDigestMismatch},
		{"empty text", cv(2, ""), ErrContractVersion},
		{"no effective_at", ContractVersion{Version: 2, ContractText: "a", ContractDigest: Digest("a")}, ErrContractVersion},
		{"duplicate with different text", cv(1, contractV1+" "), ErrContractVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Add(tc.c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Add = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(r, got); diff != "" {
				t.Fatalf("refused Add changed the registry:\n%s", diff)
			}
		})
	}
	r2, err := r.Add(v2)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Versions) != 1 || !cmp.Equal(r2.SupportedVersions(), []int{1, 2}) {
		t.Fatalf("Add mutated input or failed: %v / %v", r.SupportedVersions(), r2.SupportedVersions())
	}
	if again, err := r2.Add(v2); err != nil || !cmp.Equal(again, r2) {
		t.Fatalf("idempotent Add: %v", err)
	}
	dep := t0.Add(time.Hour)
	r3, err := r2.Deprecate(1, dep)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Versions[0].Deprecated() {
		t.Fatal("Deprecate mutated its input")
	}
	if err := r3.AdoptableForNewPeer(1); !errors.Is(err, ErrContractVersion) {
		t.Fatalf("deprecated v1 adoptable: %v", err)
	}
	if err := r3.AdoptableForNewPeer(2); err != nil {
		t.Fatal(err)
	}
	if err := r3.AdoptableForNewPeer(3); err == nil {
		t.Fatal("unknown version adoptable")
	}
	if !r3.Known(1) || r3.Known(3) || !cmp.Equal(r3.SupportedVersions(), []int{2}) {
		t.Fatalf("known/supported after deprecation: %v", r3.SupportedVersions())
	}
	if r4, err := r3.Deprecate(1, dep.Add(time.Hour)); err != nil || !r4.Versions[0].DeprecatedAt.Equal(dep) {
		t.Fatalf("second deprecate: %v", err)
	}
	if _, err := r3.Deprecate(9, dep); !errors.Is(err, ErrContractVersion) {
		t.Fatalf("deprecate unknown: %v", err)
	}
	// JSON round trip, then Validate catches tampering.
	raw, err := json.Marshal(r3)
	if err != nil {
		t.Fatal(err)
	}
	var back Registry
	if err := json.Unmarshal(raw, &back); err != nil || back.Validate() != nil || !cmp.Equal(back, r3) {
		t.Fatalf("registry round trip: %v %v", err, back.Validate())
	}
	back.Versions[1].ContractText = "tampered"
	if err := back.Validate(); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("tampered registry: %v", err)
	}
	if (Registry{}).Validate() != nil || (Registry{}).Known(1) {
		t.Fatal("zero registry")
	}
}
