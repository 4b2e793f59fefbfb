package watch_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/ferrysync/ferry/watch"
)

// The engine's loop: watch the source, and look at every hinted path (or
// rescan a subtree) as batches arrive.
func ExampleWatcher() {
	w, err := watch.New("/srv/source", watch.Options{
		Ignore: func(rel string, isDir bool) bool {
			return strings.Contains(rel, ".ferry-partial-")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	for batch := range w.Hints() {
		for _, h := range batch {
			if h.Rescan {
				fmt.Println("compare the whole subtree", h.Path)
			} else {
				fmt.Println("stat and plan", h.Path)
			}
		}
	}
}
