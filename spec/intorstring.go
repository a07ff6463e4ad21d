package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// IntOrString is a port given as a number or as a container port's name,
// with the JSON form of Kubernetes' intstr.IntOrString. It is our own type
// because the apimachinery one drags logging and fuzzing libraries into the
// binary.
type IntOrString struct {
	IsString bool
	IntVal   int32
	StrVal   string
}

// FromInt returns a numeric IntOrString.
func FromInt(i int32) IntOrString { return IntOrString{IntVal: i} }

// FromString returns a named IntOrString.
func FromString(s string) IntOrString { return IntOrString{IsString: true, StrVal: s} }

func (v IntOrString) String() string {
	if v.IsString {
		return v.StrVal
	}
	return strconv.Itoa(int(v.IntVal))
}

// MarshalJSON writes a number or a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

// UnmarshalJSON reads a number or a string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString, v.IntVal = true, 0
		return json.Unmarshal(b, &v.StrVal)
	}
	v.IsString, v.StrVal = false, ""
	if err := json.Unmarshal(b, &v.IntVal); err != nil {
		return fmt.Errorf("port %s: %w", b, err)
	}
	return nil
}
