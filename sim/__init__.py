"""Fleet simulator: thousands of virtual agents against a cloud (`storeedge sim fleet`)."""
