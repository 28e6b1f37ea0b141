// Package docgen generates fedgate's reference documentation from the code
// itself, so it cannot drift: the configuration reference (docs/config.md)
// from agent.Config, its defaults and its doc comments, and the man pages
// of fedgate(1) and fedgated(8) from the cobra commands' help output.
// cmd/fedgate-docgen is its command line; packaging calls it.
package docgen
