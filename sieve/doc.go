// Package sieve is the Sieve mail filtering language (RFC 5228) with the
// extensions real scripts use: fileinto, reject and ereject (RFC 5429),
// envelope, encoded-character, the i;octet, i;ascii-casemap and
// i;ascii-numeric comparators with relational (RFC 5231), regex (as
// Pigeonhole implements the draft: POSIX extended syntax), variables
// (RFC 5229), subaddress (RFC 5233), body (RFC 5173), date and
// currentdate (RFC 5260), include (RFC 6609), duplicate (RFC 7352),
// mailbox (RFC 5490), copy (RFC 3894), imap4flags (RFC 5232) and
// vacation with vacation-seconds (RFC 5230, RFC 6131).
//
// Compile turns a script into a Script that can run any number of times
// at once; Run runs it over a Message, whose header is read and split
// once, and returns the actions decided. Nothing is done here: the
// caller (mda) stores, forwards and replies. The package knows nothing
// of files, sockets or mailboxes; included scripts come from a Loader,
// folders and remembered ids from an Environment.
//
// Errors name the script, the line and the column. A script that fails
// while it runs still has a result: the implicit keep, so that no
// message is lost. Limits bound the work and memory of every run.
package sieve
