package federation

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed semantic version (semver 2.0.0, an optional leading
// "v" accepted).
type Version struct {
	Major, Minor, Patch int
	Pre, Build          string
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// ParseVersion parses MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] strictly: no
// leading zeros in numeric parts, identifiers of [0-9A-Za-z-], non-empty.
func ParseVersion(s string) (Version, error) {
	in := s
	if len(s) > 128 {
		return Version{}, fmt.Errorf("%w: %q longer than 128 bytes", ErrVersionFormat, s[:32]+"…")
	}
	s = strings.TrimPrefix(s, "v")
	var v Version
	if i := strings.IndexByte(s, '+'); i >= 0 {
		v.Build = s[i+1:]
		s = s[:i]
		if err := checkIdents(v.Build, false); err != nil {
			return Version{}, fmt.Errorf("%w: %q: build: %v", ErrVersionFormat, in, err)
		}
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.Pre = s[i+1:]
		s = s[:i]
		if err := checkIdents(v.Pre, true); err != nil {
			return Version{}, fmt.Errorf("%w: %q: prerelease: %v", ErrVersionFormat, in, err)
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%w: %q is not MAJOR.MINOR.PATCH", ErrVersionFormat, in)
	}
	nums := [3]*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := parseNum(p)
		if err != nil {
			return Version{}, fmt.Errorf("%w: %q: %v", ErrVersionFormat, in, err)
		}
		*nums[i] = n
	}
	return v, nil
}

func parseNum(p string) (int, error) {
	if p == "" {
		return 0, fmt.Errorf("empty numeric part")
	}
	if len(p) > 1 && p[0] == '0' {
		return 0, fmt.Errorf("leading zero in %q", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", p)
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil || n > 1<<30 {
		return 0, fmt.Errorf("%q out of range", p)
	}
	return n, nil
}

func checkIdents(s string, noLeadingZero bool) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return fmt.Errorf("empty identifier")
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return fmt.Errorf("invalid character %q", c)
			}
		}
		if noLeadingZero && numeric && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("leading zero in %q", id)
		}
	}
	return nil
}

// CompatibleVersions returns nil if platform versions ours and theirs may
// federate (commitment 10): same major and at most one minor apart, in
// either direction. The error names both versions.
func CompatibleVersions(ours, theirs string) error {
	a, err := ParseVersion(ours)
	if err != nil {
		return fmt.Errorf("our platform version (ours %s, theirs %s): %w", ours, theirs, err)
	}
	b, err := ParseVersion(theirs)
	if err != nil {
		return fmt.Errorf("peer platform version (ours %s, theirs %s): %w", ours, theirs, err)
	}
	if a.Major != b.Major {
		return fmt.Errorf("%w: ours %s, theirs %s: different major versions", ErrIncompatibleVersion, ours, theirs)
	}
	if d := a.Minor - b.Minor; d > 1 || d < -1 {
		return fmt.Errorf("%w: ours %s, theirs %s: more than one minor version apart", ErrIncompatibleVersion, ours, theirs)
	}
	return nil
}
