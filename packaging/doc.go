// Package packaging builds fedgate's Debian package (build-deb.sh, called
// by `make deb`; maintainer scripts and metadata in debian/) and tests it:
// TestPrivilegedDebInstall builds the .deb, runs lintian, installs it with
// dpkg -i, checks the files and the fedgate system user, purges it with
// dpkg -P and checks that nothing is left behind. The package has no Go API.
package packaging
