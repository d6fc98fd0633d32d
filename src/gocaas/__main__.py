from gocaas.launcher import main

main()
