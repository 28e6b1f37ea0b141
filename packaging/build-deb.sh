#!/usr/bin/env bash
# Build dist/fedgate_<version>_<arch>.deb with dpkg-deb (no debhelper):
# both binaries, the systemd units, the example config (as the conffile
# /etc/fedgate/fedgated.yaml and under /usr/share/doc), bash/zsh/fish
# completions and man pages generated from the cobra commands, and the
# config reference. Maintainer scripts create the fedgate system user.
#
#   packaging/build-deb.sh [OUTDIR]      (VERSION=... to override the version)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
arch=$(dpkg --print-architecture 2>/dev/null || go env GOARCH)
if [ -z "${VERSION:-}" ]; then
  # Debian version from the last commit: 0.1.0~gitYYYYMMDD.<sha>.
  VERSION="0.1.0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d).$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)-1"
fi
date_rfc=$(git log -1 --format=%cD 2>/dev/null || date -uR)
date_iso=$(git log -1 --format=%cd --date=format:%Y-%m-%d 2>/dev/null || date -u +%F)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
bin=$work/bin
mkdir -p "$bin"

echo "building binaries ($VERSION, $arch)"
export CGO_ENABLED=0
ldflags="-s -w -buildid="
GOARCH=$(go env GOARCH) go build -trimpath -ldflags "$ldflags" -o "$bin/fedgated" ./cmd/fedgated
go build -trimpath -ldflags "$ldflags" -o "$bin/fedgate" ./cmd/fedgate
go build -o "$bin/fedgate-docgen" ./cmd/fedgate-docgen

install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
  "$root/usr/share/doc/fedgate/examples" "$root/usr/share/lintian/overrides" "$root/etc/fedgate" "$root/DEBIAN"
install -m 0755 "$bin/fedgated" "$bin/fedgate" "$root/usr/bin/"
install -m 0644 systemd/fedgated.service "systemd/fedgate-wg@.service" "$root/lib/systemd/system/"

for b in fedgate fedgated; do
  "$bin/$b" completion bash >"$root/usr/share/bash-completion/completions/$b"
  "$bin/$b" completion zsh >"$root/usr/share/zsh/vendor-completions/_$b"
  "$bin/$b" completion fish >"$root/usr/share/fish/vendor_completions.d/$b.fish"
done
chmod 0644 "$root"/usr/share/bash-completion/completions/* "$root"/usr/share/zsh/vendor-completions/* "$root"/usr/share/fish/vendor_completions.d/*

"$bin/fedgate-docgen" man -bin "$bin/fedgate" -section 1 -version "$VERSION" -date "$date_iso" -o "$root/usr/share/man/man1/fedgate.1"
"$bin/fedgate-docgen" man -bin "$bin/fedgated" -section 8 -version "$VERSION" -date "$date_iso" -o "$root/usr/share/man/man8/fedgated.8"
gzip -9n "$root/usr/share/man/man1/fedgate.1" "$root/usr/share/man/man8/fedgated.8"

# 0644 in the package; postinst gives it to root:fedgate 0640.
install -m 0644 fedgate.example.yaml "$root/etc/fedgate/fedgated.yaml"
install -m 0644 fedgate.example.yaml "$root/usr/share/doc/fedgate/examples/fedgated.yaml"
install -m 0644 docs/config.md "$root/usr/share/doc/fedgate/config.md"
gzip -9n "$root/usr/share/doc/fedgate/config.md"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/fedgate/copyright"
install -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/fedgate"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$date_rfc/" packaging/debian/changelog.in | gzip -9n >"$root/usr/share/doc/fedgate/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/fedgate/changelog.Debian.gz"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in >"$root/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 0755 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb="$out/fedgate_${VERSION}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
