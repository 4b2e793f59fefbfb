// Package config reads ferry's YAML job file (ferry.yaml) into typed, validated
// structs with every default filled in, so the commands that run jobs never see
// YAML. It decodes the yaml.Node tree itself rather than through struct tags so
// that every problem can name its file, line, column and key path, and so that
// all problems of a file are reported at once. The keys are documented in
// schema.go; testdata/full.yaml is a commented example that loads.
package config
