// Command hello prints a greeting and the version it was built as.
package main

import "fmt"

// version is stamped by `gocaas build --version` (-ldflags -X main.version=...).
var version = "dev"

func main() {
	fmt.Printf("hello from gocaas (version %s)\n", version)
}
