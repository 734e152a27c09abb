fn main() {
    eprintln!("nas: the command-line tool is not built yet; see README.md");
    std::process::exit(2);
}
