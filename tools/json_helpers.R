# json_helpers.R -- helpers shared by tools/lme4_reference.R and
# tools/mgcv_reference.R for writing reference numbers to JSON at full
# precision, and for reading the CSV inputs.  Not a script of its own: the two
# reference scripts source() it from their own directory.
#
# jsonlite's own number formatting stops at 15 significant digits, so doubles
# are formatted here as text and wrapped in class "json"; toJSON(...,
# json_verbatim = TRUE) then passes that text through unchanged.

## --- exact JSON number formatting ----------------------------------------------
# Shortest of 15, 16 or 17 significant digits that reads back as the same IEEE
# double (17 always does).  NA becomes JSON null; NaN and +-Inf are an error.
fmt_num <- function(x) {
  x <- as.double(x)
  if (any(is.nan(x) | is.infinite(x))) stop("non-finite number")
  out <- rep("null", length(x))
  ok <- !is.na(x)
  v <- x[ok]
  s <- sprintf("%.15g", v)
  bad <- as.numeric(s) != v
  s[bad] <- sprintf("%.16g", v[bad])
  bad <- as.numeric(s) != v
  s[bad] <- sprintf("%.17g", v[bad])
  stopifnot(all(as.numeric(s) == v))
  out[ok] <- s
  out
}

as_json <- function(s) structure(s, class = "json")    # passed verbatim by toJSON

jnum <- function(x) {                                  # scalar number
  stopifnot(length(x) == 1)
  as_json(fmt_num(x))
}
jvec <- function(x) as_json(paste0("[", paste(fmt_num(x), collapse = ","), "]"))
jmat <- function(m) {                                  # matrix as a list of rows
  m <- as.matrix(m)
  rows <- apply(m, 1, function(r) paste0("[", paste(fmt_num(r), collapse = ","), "]"))
  as_json(paste0("[", paste(rows, collapse = ","), "]"))
}
jchr <- function(x) I(as.character(x))                 # character vector kept as a JSON array

## --- data ---------------------------------------------------------------------
# Read a CSV with every column as text; the columns named in `factors` become
# factors whose levels are the sorted labels (C-locale / code-point order, as
# the Python loaders use), all other columns are parsed as doubles.
read_data <- function(path, factors = character(0)) {
  df <- read.csv(path, colClasses = "character", check.names = FALSE)
  for (nm in names(df)) {
    if (nm %in% factors) {
      df[[nm]] <- factor(df[[nm]], levels = sort(unique(df[[nm]]), method = "radix"))
    } else {
      df[[nm]] <- as.numeric(df[[nm]])
    }
  }
  df
}

# The data sets the lme4 reference scripts fit, keyed by file name as in the
# Python tests (tests/reference.py), with their grouping columns as factors.
reference_datasets <- function() {
  dd <- "sklmm/datasets/data"
  list(
    "sleepstudy.csv"  = read_data(file.path(dd, "sleepstudy.csv"), "Subject"),
    "dyestuff.csv"    = read_data(file.path(dd, "dyestuff.csv"), "Batch"),
    "penicillin.csv"  = read_data(file.path(dd, "penicillin.csv"), c("plate", "sample")),
    "pastes.csv"      = read_data(file.path(dd, "pastes.csv"), c("batch", "cask", "sample")),
    "schools.csv"     = read_data(file.path(dd, "schools.csv"), "school"),
    "sim_crossed.csv" = read_data("tests/data/sim_crossed.csv", c("subj", "item")),
    "sim_nested.csv"  = read_data("tests/data/sim_nested.csv", c("outer", "inner"))
  )
}
