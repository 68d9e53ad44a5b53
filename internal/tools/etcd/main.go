// Command etcd is the etcd server (v3.7) built from the module Weir pins,
// for the multi-process tests and for trying Weir's etcd discovery by hand:
// `make` builds it into .tools/etcd. It takes etcd's own flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
