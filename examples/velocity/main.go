// Command velocity is a weir binary with a job of its own, card-velocity,
// next to the commands of weir itself: run its jobmanager, taskmanagers
// and `job submit card-velocity` exactly as with weir.
package main

import "github.com/weirstream/weir"

func main() {
	weir.Register(velocityJob)
	weir.Main()
}
