module github.com/demobank/yacredits/services/offers

go 1.26
