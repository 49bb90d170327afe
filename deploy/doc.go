// Package deploy checks recon's Kubernetes manifests (deploy/k8s): its test
// renders every kustomization with the kustomize API, decodes every
// object strictly into the Kubernetes API types (and the Strimzi and KEDA
// custom resources into the fields recon uses), and checks them against
// the binaries it builds: flags and their defaults from each binary's -h,
// ports, probes (it runs the scorer and the trainer and asks them), the
// pinned image, KEDA's brokers and Secrets, the KafkaUser's ACLs against
// the topics and groups the binaries use, the NetworkPolicies and the
// headless governing Service. It is a module of its own so that the
// Kubernetes libraries stay out of recon's.
package deploy
