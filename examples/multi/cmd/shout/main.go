// Command shout greets its first argument, loudly.
package main

import (
	"fmt"
	"os"

	"example.com/multi/greeting"
)

func main() {
	name := ""
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Println(greeting.Loud(name))
}
