module github.com/demobank/yacredits/services/gateway

go 1.26

require github.com/demobank/yacredits/pkg v0.0.0

replace github.com/demobank/yacredits/pkg => ../../pkg
