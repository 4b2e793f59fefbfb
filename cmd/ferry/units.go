package main

import "github.com/ferrysync/ferry/cmd/ferry/config"

// parseRate reads --bwlimit with the same syntax as the config file's rate
// values (config.ParseRate): 500K, 10M, 1.5MiB, with an optional "/s";
// K, M, G are 1024-based. 0 means no limit.
func parseRate(s string) (int64, error) { return config.ParseRate(s) }
