from monitor.program import main

main()
