// Package k8stest proves the chart in deploy/helm/weir on parts of a real
// Kubernetes cluster, in tests that only `make test-k8s` runs (build tag
// k8s; `make test` calls it). Nothing here is a mock: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler built from
// the k8s.io/kubernetes module (internal/tools/k8s), kwok giving fake nodes
// that report the pods scheduled on them as running, helm installing the
// chart, and podman running the image `make image` builds with the
// command, arguments and environment `helm template` renders.
//
// The tools are found in <repo>/.tools, where the Makefile installs them.
// Under the k8s tag a missing tool fails the test: these tests never skip.
package k8stest
