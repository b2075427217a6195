module github.com/demobank/yacredits/cmd

go 1.26
