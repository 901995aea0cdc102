// Package interpolate renders buildbot's Interpolate strings and step conditions.
//
// # Templates
//
// [Parse] reads a string in the dictionary form of buildbot's
// util.Interpolate, and [Template.Render] renders it against a [Context]:
//
//	%(prop:NAME)s            the build property NAME
//	%(src:CODEBASE:ATTR)s    an attribute of the source stamp of CODEBASE:
//	                         branch, revision, repository, project or codebase;
//	                         CODEBASE is often empty: %(src::revision)s
//	%(secret:NAME)s          the secret NAME; its value is returned by Render
//	                         so that the caller can redact it
//	%(kw:NAME)s              the keyword NAME (Context.Keyword)
//	%(worker:NAME)s          the worker info item NAME
//	%%                       a literal %
//
// As in buildbot, the NAME may be followed by one of
//
//	:-DEFAULT      the value if set, else DEFAULT (a missing value with no
//	               default renders as "")
//	:~DEFAULT      the value if set and true in Python's sense, else DEFAULT
//	:+ALT          ALT if set, else ""
//	:?|YES|NO      YES if set, else NO
//	:#?|YES|NO     YES if set and true in Python's sense, else NO
//
// where DEFAULT, ALT, YES and NO are templates themselves, so they may hold
// %(...)s and must write a literal % as %%. The character after ? (here |)
// is the delimiter, any character but "(" as in buildbot; a delimiter inside
// a nested %(...)s does not count. A secret is always "set": asking for an
// unknown secret fails the render unless :+ or :? makes its value unneeded.
//
// Values are formatted as Python's str: true is "True", 3 is "3", 1.5 is
// "1.5", a list is "['a', 1]"; a property that is set to nil renders as
// "" (buildbot's elideNoneAs), inside a list as None. Python's false values
// are nil, false, 0, 0.0, "" and empty lists and maps; the string "False"
// is true.
//
// Unlike buildbot, an empty NAME (%(prop:)s) is an error, and ATTR of src
// must be one of the five above; a bad template is found by Parse, so a
// config checker reports it with its column before any build runs.
//
// # Conditions
//
// [ParseCondition] reads the expression form of do_step_if and hide_step_if:
//
//	cond     = or
//	or       = and { "||" and }
//	and      = unary { "&&" unary }
//	unary    = "!" unary | primary
//	primary  = "(" cond ")" | operand [ cmp operand ]
//	cmp      = "==" | "!=" | "=~" | "!~"
//	operand  = word | '"' ... '"' | "'" ... "'"
//
// An operand is a template (see above), rendered when the condition is
// evaluated. A bare word runs up to a space or one of ( ) ! & | = " ' outside
// a %(...)s, so %(prop:x:?|a|b)s and %(prop:x:-a b)s are single words;
// quote anything else. Inside quotes, \" (or \') and \\ stand for the quote
// and a backslash; any other backslash is kept, so regular expressions read
// naturally.
//
// == and != compare the rendered strings. =~ and !~ match the left string
// against the right one as a Go regular expression (RE2), unanchored as
// Python's re.search: write ^ and $ to anchor. An operand alone is true when
// its rendering is not "", "False", "false", "0" or "None". ! negates the
// comparison or group that follows it; && binds tighter than ||, both
// evaluate left to right and stop as soon as the result is known.
//
//	%(prop:branch)s == main
//	%(prop:branch)s != main && %(prop:branch)s !~ ^release/
//	%(prop:branch)s =~ "^(main|release/.*)$"
//	%(prop:skip:#?|yes|no)s == no
//	%(prop:run_docs)s
//	!(%(prop:branch)s == main || %(src::branch)s == "feature x")
//	true
//
// A TOML boolean do_step_if = false is [ConstCondition](false).
package interpolate
