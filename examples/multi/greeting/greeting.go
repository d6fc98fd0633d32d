// Package greeting builds greetings for the commands of this module.
package greeting

import "strings"

// For returns a greeting for name; an empty name greets the world.
func For(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "world"
	}
	return "hello, " + name
}

// Loud returns the greeting in capitals with an exclamation mark.
func Loud(name string) string {
	return strings.ToUpper(For(name)) + "!"
}
